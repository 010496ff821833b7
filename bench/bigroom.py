"""W4 of `make bench` (bench/bench.py): one big room, filled, then written to.

2,000 sockets (full run; `--quick`: 600) join one room, alternating between the 2 workers (the
bare server: its one process). The product gives every socket its own user (bench0000..), as in a
real big room where each member is a person: presence then changes on every join, and the
per-user socket cap (20) is never reached, so it stays at its default.

- Two probe sockets (one on each worker) join first, in their own client process, and send into
  the room all through the fill (w4_probe_rate messages/s between them, in steps of a few
  seconds): the p99 *during* the fill is their end-to-end latency, each probe receiving the
  other's messages and its own.
- The other sockets open in paced batches (w4_in_flight per client process at a time), in one run
  that passes through each size of w4_sizes (500, 1,000, 2,000: sizes counted with the probes). At
  each size, once the last `joined` is in, the run waits until no frame other than a `message`
  has arrived on any of them for w4_quiet seconds (the tail of the presence traffic), then reads:
  - wall time of the fill so far (opening only, not the quiet waits);
  - server CPU so far (product: its workers + Redis + PostgreSQL; naive: its 2 Daphne processes +
    Redis; bare: its process), and per socket in the room: a fill whose cost grows linearly
    keeps the same CPU per socket at every size; a quadratic one doubles it when the size doubles;
  - bytes received by all sockets so far, every frame whatever its type (`joined`, presence lists
    or changes, the probes' messages), per socket in the room;
  - the largest `joined` frame (Daphne refuses to send a frame over 64 KiB).
- Past w4_fill_budget seconds since the fill began (quiet waits included), the fill stops where it
  is (a MISS), and so does W4: a fill whose cost grows with the square of the room does not end in
  minutes, and the whole `make bench` must.
- Then, in the full room, w4_rate messages/s for w4_seconds from two of its sockets (one on each
  worker): deliveries/s, p99 end to end, lost, as a W1 step.

The probes' messages add to the fill's CPU (at most w4_probe_rate x size deliveries a second);
the baselines have no `joined` and no presence: their bytes are only the probes' messages.
"""

from __future__ import annotations

import secrets
import threading
import time
from array import array
from collections import Counter

from tests.support.cpu import CpuMeter
from tests.support.load import NoBar, run_steps, stats
from tests.support.loadgen import Clients

JOINED_LIMIT = 64 * 1024  # Daphne's --websocket-max-message-size, outgoing as well
PROBE_SECONDS = 3  # the probes send in steps this long (w4_probe_seconds overrides it)
GROWTH_GOAL = 1.5  # CPU per socket at the largest size / at the smallest: linear stays near 1


def cpu_seconds(meter: CpuMeter, before: dict, after: dict) -> dict[str, float]:
    """Server CPU seconds by group (not the clients) between two samples of `meter`."""
    return {
        name: round(after[name] - before[name], 2) for name in meter.groups if name not in ("clients", "machine", "t")
    }


class Probes:
    """The two probe sockets' sending through the fill, in steps of PROBE_SECONDS, on a thread."""

    def __init__(self, clients: Clients, room: str, rate: float, seconds: float = PROBE_SECONDS) -> None:
        self.clients, self.room, self.rate, self.seconds = clients, room, rate, seconds
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.totals: Counter = Counter()
        self.closes: Counter = Counter()
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        index = 1000  # step numbers of their own: the fill sockets see these messages too
        while not self.stop.is_set():
            start = time.time() + 0.2
            step = {
                "index": index,
                "rate": self.rate,
                "start": start,
                "end": start + self.seconds,
                "senders": 2,
                "tag": secrets.token_hex(4),
                "room_senders": {self.room: [0, 1]},
            }
            self.clients.start_step(step)
            try:
                answers = self.clients.end_step(step)
            except Exception as error:  # reported with the result, not lost in the thread
                self.totals["errors"] += 1
                self.error = f"{type(error).__name__}: {error}"
                return
            for a in answers:
                self.latencies.extend(array("d", a["latencies"]))
                self.totals.update(
                    sent=a["sent"], acked=a["acked"], expected=a["expected_here"], unique=a["unique"], dup=a["dup"]
                )
                self.closes = Counter(a["closed"])
            index += 1

    def __enter__(self) -> Probes:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=self.seconds + 30)

    def result(self, product: bool) -> dict:
        t = self.totals
        return {
            "sent": t["sent"],
            "unacked": t["sent"] - t["acked"] if product else 0,
            "expected": t["expected"],
            "deliveries": t["unique"],
            "lost": t["expected"] - t["unique"],
            "duplicates": t["dup"],
            "socket_closes": dict(self.closes),
            "error": self.error,
            **stats(self.latencies),
        }


def run_w4(target, config: dict, bar=None) -> dict:
    """W4 on an entered target (product and naive: 2 workers; room bench0)."""
    bar = bar or NoBar()
    sizes, total = config["w4_sizes"], config["w4_sizes"][-1]
    room = "bench0"
    # Sockets 0 and 1 are the probes (senders 0 and 1, one on each worker); 2 and 3 the senders of
    # the full room's messages (again one on each worker). Socket i is user i in the product.
    specs = [target.spec(i, 0, i if i < 2 else (i - 2 if i < 4 else None), worker=i) for i in range(total)]
    fill_specs = specs[2:]
    checkpoints: list[dict] = []
    result: dict = {"sockets": total, "checkpoints": checkpoints, "complete": False}
    bar.reset(total=total)
    bar.set_postfix_str("")
    with (
        Clients(specs[:2], processes=1) as probe_clients,
        Clients(fill_specs, processes=config["w4_processes"]) as clients,
    ):
        opened = probe_clients.open([0, 1], limit=0)
        if opened["failed"]:
            raise RuntimeError(f"W4 {target.name}: the probes failed to open: {opened['errors']}")
        meter = CpuMeter({**target.groups(), "clients": lambda: clients.pids + probe_clients.pids})

        def received() -> int:
            return clients.received()[0] + probe_clients.received()[0]

        def tick() -> None:
            bar.n = 2 + clients.opened()
            bar.refresh()

        before, bytes_before = meter.sample(), received()
        fill_seconds, joined_max, connect_ms = 0.0, opened["joined_max_bytes"], list(opened["connect_ms"])
        fill_started = time.time()
        probe_seconds = config.get("w4_probe_seconds", PROBE_SECONDS)
        with Probes(probe_clients, room, config["w4_probe_rate"], probe_seconds) as probes:
            at = 0  # fill sockets opened (or tried) so far
            for size in sizes:
                bar.set_description_str(f"W4 {target.name} fill to {size}")
                remaining = config["w4_fill_budget"] - (time.time() - fill_started)
                batch = list(range(at, size - 2))
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    answer = clients.open(batch, limit=config["w4_in_flight"], tick=tick, timeout=remaining)
                except TimeoutError:
                    # Where it stopped, for the record: the joins still under way are not waited for.
                    after, open_now = meter.sample(), 2 + clients.opened()
                    cpu = cpu_seconds(meter, before, after)
                    server, bytes_total = round(sum(cpu.values()), 2), received() - bytes_before
                    result["stopped"] = (
                        f"the fill to {size} did not finish within {config['w4_fill_budget']} s "
                        f"({open_now} sockets open then)"
                    )
                    result["at_stop"] = {
                        "open": open_now,
                        "seconds": round(time.time() - fill_started, 1),
                        "server_cpu_seconds": server,
                        "cpu_seconds": cpu,
                        "cpu_ms_per_socket": round(1000 * server / open_now, 2),
                        "bytes_per_socket": round(bytes_total / open_now),
                    }
                    break
                at = size - 2
                fill_seconds += answer["seconds"]
                joined_max = max(joined_max, answer["joined_max_bytes"])
                connect_ms.extend(answer["connect_ms"])
                # The tail: presence traffic still on its way once the last `joined` is in (the
                # probes' messages go on, so it is every other frame that must stop).
                settle_start, frames = time.time(), clients.received_not_messages()
                quiet_since = time.time()
                while time.time() - quiet_since < config["w4_quiet"] and time.time() - settle_start < 30:
                    time.sleep(0.1)
                    now = clients.received_not_messages()
                    if now != frames:
                        frames, quiet_since = now, time.time()
                after = meter.sample()
                cpu = cpu_seconds(meter, before, after)
                server = round(sum(cpu.values()), 2)
                bytes_total = received() - bytes_before
                checkpoints.append(
                    {
                        "size": size,
                        "open": 2 + clients.opened(),
                        "failed": answer["failed"] + (checkpoints[-1]["failed"] if checkpoints else 0),
                        "errors": answer["errors"],
                        "socket_closes": answer["socket_closes"],
                        "fill_seconds": round(fill_seconds, 2),
                        "settle_seconds": round(time.time() - settle_start, 1),
                        "server_cpu_seconds": server,
                        "cpu_seconds": cpu,
                        "clients_cpu_seconds": round(after["clients"] - before["clients"], 2),
                        "cpu_ms_per_socket": round(1000 * server / size, 2),
                        "bytes": bytes_total,
                        "bytes_per_socket": round(bytes_total / size),
                        "joined_max_bytes": joined_max,
                        "join_batch": {k: answer[k] for k in ("sockets", "opened", "seconds", "per_s")}
                        | {f"connect_{k}": v for k, v in stats(answer["connect_ms"]).items()},
                    }
                )
                if answer["failed"] or answer["socket_closes"]:
                    result["stopped"] = (
                        f"at {size}: {answer['failed']} sockets failed to open ({answer['errors']}), "
                        f"closes {answer['socket_closes']}"
                    )
                    break
            bar.set_description_str(f"W4 {target.name} probes finishing")
        result["fill_wall_seconds"] = round(time.time() - fill_started, 1)
        result["during_fill"] = probes.result(target.name == "product")
        result["joined_max_bytes"] = joined_max
        result["connect"] = stats(connect_ms)
        if "stopped" not in result:
            result["complete"] = True
            [step] = run_steps(
                target, clients, fill_specs, config, [config["w4_rate"]], config["w4_seconds"], bar, "W4"
            )
            # Two of the room's sockets are the probes' (not counted in fill_specs): the deliveries
            # and the losses are those of the other total - 2 sockets.
            result["after_fill"] = step
    if result["complete"] and len(checkpoints) > 1:
        first, last = checkpoints[0], checkpoints[-1]
        result["cpu_growth"] = round(last["cpu_ms_per_socket"] / max(first["cpu_ms_per_socket"], 1e-9), 2)
    return result


# Report ----------------------------------------------------------------------------------------

W4_HEADERS = [
    "W4 target",
    "size",
    "open",
    "fill s",
    "server CPU s",
    "CPU ms/socket",
    "KiB/socket",
    "max joined B",
    "join p99 ms",
    "clients CPU s",
]


def w4_rows(results: dict, targets: list[str]) -> list[list]:
    rows = []
    for t in targets:
        w4 = (results.get(t) or {}).get("w4")
        for c in (w4 or {}).get("checkpoints", []):
            rows.append(
                [t, c["size"], c["open"], c["fill_seconds"], c["server_cpu_seconds"], c["cpu_ms_per_socket"]]
                + [round(c["bytes_per_socket"] / 1024, 1), c["joined_max_bytes"] or "-"]
                + [c["join_batch"]["connect_p99_ms"], c["clients_cpu_seconds"]]
            )
    return rows


W4_MESSAGE_HEADERS = "W4 target,phase,sent,lost,dup,deliv/s,p50 ms,p99 ms,max ms,server%,closes".split(",")


def w4_message_rows(results: dict, targets: list[str]) -> list[list]:
    rows = []
    for t in targets:
        w4 = (results.get(t) or {}).get("w4")
        if not w4:
            continue
        d = w4["during_fill"]
        rows.append([t, "during fill (probes)", d["sent"], d["lost"], d["duplicates"], "-"])
        rows[-1] += [d["p50_ms"], d["p99_ms"], d["max_ms"], "-", d["socket_closes"] or "-"]
        s = w4.get("after_fill")
        if s:
            rows.append([t, f"room of {w4['sockets']}", s["sent"], s["lost"], s["duplicates"], s["deliveries_per_s"]])
            rows[-1] += [s["p50_ms"], s["p99_ms"], s["max_ms"], s["server_cpu_percent"], s["socket_closes"] or "-"]
        else:
            rows.append([t, "room full: not reached", "-", "-", "-", "-", "-", "-", "-", "-", w4.get("stopped", "-")])
    return rows


def w4_summary_rows(results: dict, targets: list[str], sizes: list[int], ratio, verdict) -> list[list]:
    def get(t, *path):
        value = (results.get(t) or {}).get("w4")
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def at(t, size):
        return next((c for c in get(t, "checkpoints") or [] if c["size"] == size), {})

    if not any(get(t) for t in targets):
        return []
    rows = []

    def row(label, values, goal):
        p, n, b = values
        rows.append([label, p, n, b, ratio(p, n), ratio(p, b), goal(p) if p is not None else "-"])

    def complete(p) -> str:
        return verdict(False, f"the fill stopped: {get('product', 'stopped')}")

    product = get("product") or {}
    for size in sizes:
        row(
            f"W4 fill to {size}: server CPU ms per socket", [at(t, size).get("cpu_ms_per_socket") for t in targets], str
        )
        rows[-1][-1] = "-"
    for size in sizes:
        row(f"W4 fill to {size}: wall s", [at(t, size).get("fill_seconds") for t in targets], str)
        rows[-1][-1] = "-"
    row(
        f"W4 fill CPU per socket, {sizes[-1]} / {sizes[0]}",
        [get(t, "cpu_growth") for t in targets],
        lambda p: verdict(p <= GROWTH_GOAL, f"{p}x, linear <= {GROWTH_GOAL}x"),
    )
    if product and not product.get("complete"):
        rows[-1][-1] = complete(None)
    row(
        f"W4 bytes received per socket (fill to {sizes[-1]})",
        [at(t, sizes[-1]).get("bytes_per_socket") for t in targets],
        str,
    )
    rows[-1][-1] = "-"
    row(
        "W4 largest joined, bytes",
        [get(t, "joined_max_bytes") or None for t in targets],
        lambda p: verdict(p < JOINED_LIMIT, f"{p} < 65536" if p < JOINED_LIMIT else f"{p} >= 65536"),
    )
    row(
        "W4 p99 ms during the fill (probes)",
        [get(t, "during_fill", "p99_ms") for t in targets],
        lambda p: verdict(
            p < 200 and product["during_fill"]["lost"] == 0,
            f"{p} ms, {product['during_fill']['lost']} lost; goal < 200, 0 lost",
        ),
    )
    row(
        f"W4 p99 ms in the room of {sizes[-1]}",
        [get(t, "after_fill", "p99_ms") for t in targets],
        lambda p: verdict(
            p < 200 and product["after_fill"]["lost"] == 0 and product["after_fill"]["unacked"] == 0,
            f"{p} ms, {product['after_fill']['lost']} lost; goal < 200, 0 lost",
        ),
    )
    if product and not product.get("complete"):
        rows[-1][-1] = complete(None)
    return rows


# A small W4 for tests/e2e/test_bench_smoke.py: 100 sockets in one room, the product only.
SMOKE = {
    "w4_sizes": [50, 100],
    "w4_in_flight": 10,
    "w4_processes": 2,
    "w4_probe_rate": 2,
    "w4_probe_seconds": 1,
    "w4_quiet": 0.5,
    "w4_fill_budget": 30,
    "w4_rate": 4,
    "w4_seconds": 2,
}
