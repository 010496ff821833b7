"""`make bench`: the chat server under load, next to two baselines measured in the same session.

    .venv/bin/python -m bench.bench                   # full run, about 12 minutes on 2 cores
    .venv/bin/python -m bench.bench --quick           # a few minutes, fewer and shorter steps
    .venv/bin/python -m bench.bench --only w1 --targets product,naive
    .venv/bin/python -m bench.bench --only w4 --targets product    # the big room alone
    .venv/bin/python -m bench.bench --report bench/results/bench.json   # reprint a run's table
    .venv/bin/python -m bench.bench --smoke           # W1 on the product at a modest load, seconds

Targets, each started here and stopped here, on loopback, clients connecting straight to the
server processes (no proxy for anyone):
  product  bin/cluster (tests/support/load.py's ProductTarget): Daphne workers + its own redis-server +
           a throwaway PostgreSQL (SQLite when PostgreSQL's binaries are absent). 250 real users
           (bench000..bench249) with real Django sessions; each socket sends the session cookie and
           an Origin, joins its room (`joined`), sends `send` and gets `ack` + `message` frames.
  naive    bench/naive: the official Channels tutorial's consumer (group_send per message on
           channels_redis.core.RedisChannelLayer, no persistence, no auth), 2 Daphne processes
           (1 for W2) on one redis-server.
  bare     bench/bare_server.py: `websockets` with in-process rooms and websockets.broadcast, one
           process: the ceiling for Python.

Workloads (the clients are asyncio WebSocket clients in separate processes, tests/support/loadgen.py):
  W1 fan-out: 500 sockets in 10 rooms of 50, 2 senders per room (one on each worker), the total
     offered rate stepped up. Each step sends for a few seconds, then drains (every send acked, and
     every expected delivery in or none for 2 s; 20 s at most). Lost = expected - delivered, with
     expected = acked (product) or sent (baselines) x 50. A step passes with 0 lost, 0 duplicated,
     every send acked and p99 end-to-end latency < 200 ms; stepping stops after two failing steps
     in a row. The figure is the highest deliveries/s of a passing step. At that step, server CPU
     per delivery = the server's CPU (SERVER_CPU says what it counts) / deliveries/s, and per
     message = the same CPU / messages stored a second (the baselines store nothing: sent).
  W2 idle capacity: 5,000 sockets joined to 100 rooms of 50, on one worker (product: 20 sockets
     per user, the per-user cap in force). 4,000 opened in paced batches (RSS sampled every 1,000),
     the last 1,000 as one concurrent burst (connect + join per second, failures); memory per socket
     = (RSS at 5,000 - RSS after a 50-socket warm-up) / 4,950, also the slope of RSS over the
     checkpoints; then server CPU over a 30 s idle window (nothing sent; the product's presence
     heartbeats and session watch run), once the server has settled after the burst (5 s, then
     until a second under 10% of a core, 30 s more at most).
  W3 send-to-ack: 20 sockets (2 per room in 10 rooms, no other listeners), 200 messages/s inbound in
     total, persistence included: p50/p99 of send -> ack. The baselines have no ack: their figure
     is send -> the sender's own copy (echo), a reference only.
  W4 big room (bench/bigroom.py): 2,000 sockets (one user each in the product) join one room on 2
     workers, in paced batches, through 500, 1,000 and 2,000: wall time, server CPU and bytes
     received per socket at each size, the largest `joined`, p99 of two probes' messages during the
     fill; then 2 msg/s into the full room for 10 s (p99, lost). A fill past 120 s stops (MISS).

Progress: a bar (tqdm) when stdout is a terminal; otherwise a plain line per phase and every 15 s.

Times are time.time() stamps taken in different processes of one machine. CPU shares come from
/proc (100% = one core); the clients run on the same cores as the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bigroom import W4_HEADERS, W4_MESSAGE_HEADERS, run_w4, w4_message_rows, w4_rows, w4_summary_rows
from bench.layers import machine_info, table
from tests.support.cpu import CpuMeter
from tests.support.daphne_server import clean_env, free_port
from tests.support.load import (
    LIFTED,
    SMOKE,
    NoBar,
    ProductTarget,
    meter_for,
    run_steps,
    run_w1,
    server_share,
    stats,
)
from tests.support.loadgen import Clients
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["product", "naive", "bare"]
WORKLOADS = ["w1", "w2", "w3", "w4"]
RESULTS = ROOT / "bench" / "results"
FULL = {
    "w1_rooms": 10,
    "w1_room_size": 50,
    "w1_rates": [20, 40, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560],  # x1.5 or x1.33 a step
    "w1_seconds": 5,
    "w1_processes": 4,
    "w1_steps_after_failure": 1,  # stepping stops after 1 + this many failing steps in a row
    "w2_sockets": 5000,
    "w2_room_size": 50,
    "w2_batch": 1000,
    "w2_burst": 1000,
    "w2_warmup": 50,
    "w2_paced_in_flight": 10,  # per client process: paced, so the batches measure memory, not the backlog
    # 30 s, not 20: the product's session watch checks every open socket's session every
    # CHAT_SESSION_SWEEP_SECONDS (30 by default). A 20 s window once showed 4 s near 90% of a core
    # among ~10% seconds, probably that sweep (not verified); 30 s holds one period whatever its phase.
    "w2_idle_seconds": 30,
    "w2_settle_seconds": 5,  # after the burst, at least, before the idle window
    "w2_processes": 4,
    "w3_rooms": 10,
    "w3_rate": 200,
    "w3_seconds": 10,
    "w3_processes": 2,
    # W4 (bench/bigroom.py): one room filled through these sizes (the probes included), then messages.
    "w4_sizes": [500, 1000, 2000],
    "w4_in_flight": 10,  # per client process: paced batches
    "w4_processes": 4,
    "w4_probe_rate": 1,  # messages/s between the two probes, all through the fill
    # At each size, nothing but messages received for this long: the fill's tail is over (longer
    # than a second, as the server may batch presence changes over a second).
    "w4_quiet": 2.0,
    "w4_fill_budget": 120,  # seconds since the fill began, at most: past it the fill stops (a MISS)
    "w4_rate": 2,  # then, in the full room: 2 msg/s x 2,000 sockets = 4,000 deliveries/s
    "w4_seconds": 10,
}
QUICK = {
    **FULL,
    "w1_rates": [40, 160, 640, 2560],
    "w1_seconds": 3,
    "w2_sockets": 2000,
    "w2_batch": 500,
    "w2_burst": 500,
    "w2_idle_seconds": 5,
    "w3_seconds": 4,
    "w4_sizes": [150, 300, 600],
    "w4_fill_budget": 60,
    "w4_seconds": 4,
}
TARGETS_GOALS = {
    "w1_vs_naive": 5.0,
    "w1_vs_bare": 0.5,
    "w1_cpu_us_per_delivery": 50,
    "w2_kib": 36,
    "w2_idle_cpu": 3,
    "w2_burst_per_s": 300,  # connects + joins per second on W2's one worker
    "w3_p99": 20,
}
# What "server CPU" counts, per target (W1's CPU per delivery and per message, W4's fill CPU).
SERVER_CPU = {
    "product": "its 2 Daphne workers + its redis-server + PostgreSQL (postmaster and backends)",
    "naive": "its 2 Daphne processes + its redis-server",
    "bare": "its one process",
}


# Targets ---------------------------------------------------------------------------------------


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s:\n{log.read_text(errors='replace')}")


class ProcessesTarget:
    """Server processes started here (the baselines): `commands(port)` gives each one's command."""

    def __enter__(self):
        self.stack = contextlib.ExitStack()
        self.dir = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix=f"chat-bench-{self.name}-")))
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def launch(self, command: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        port = free_port()
        log = self.dir / f"server-{len(self.processes)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [part.replace("PORT", str(port)) for part in command],
                cwd=cwd,
                env=clean_env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        self.ports.append(port)
        wait_port(port, process, log)

    def __exit__(self, *exc_info) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.stack.close()

    def spec(self, i: int, room: int, sender: int | None, worker: int) -> dict:
        port = self.ports[worker % len(self.ports)]
        url = f"ws://127.0.0.1:{port}/ws/chat/bench{room}/"
        return {"kind": self.name, "url": url, "headers": None, "room": f"bench{room}", "sender": sender}

    def server_pids(self) -> list[int]:
        return [p.pid for p in self.processes]


class NaiveTarget(ProcessesTarget):
    name = "naive"

    def __init__(self, *, workers: int) -> None:
        self.workers = workers

    def start(self) -> None:
        self.redis = self.stack.enter_context(RedisServer())
        daphne = str(Path(sys.executable).parent / "daphne")
        env = {"REDIS_URL": self.redis.url, "DJANGO_SETTINGS_MODULE": "naive.settings"}
        for _ in range(self.workers):
            self.launch(
                [daphne, "-b", "127.0.0.1", "-p", "PORT", "naive.asgi:application"], cwd=ROOT / "bench", env=env
            )

    def groups(self) -> dict:
        return {"server": self.server_pids, "redis": lambda: [self.redis.process.pid]}


class BareTarget(ProcessesTarget):
    name = "bare"
    workers = 1

    def __init__(self, **_) -> None:
        pass

    def start(self) -> None:
        self.launch([sys.executable, "-m", "bench.bare_server", "--port", "PORT"], cwd=ROOT, env={})

    def groups(self) -> dict:
        return {"server": self.server_pids}


def make_target(name: str, *, workers: int, rooms: int, env: dict | None = None, users: int | None = None):
    if name == "product":
        return ProductTarget(workers=workers, rooms=rooms, env=env, **({"users": users} if users else {}))
    if name == "naive":
        return NaiveTarget(workers=workers)
    return BareTarget()


# Measuring -------------------------------------------------------------------------------------


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run_w3(target, config: dict, bar=None) -> dict:
    bar = bar or NoBar()
    specs = [target.spec(i, i // 2, i, worker=i) for i in range(2 * config["w3_rooms"])]
    bar.reset(total=1)
    with Clients(specs, processes=config["w3_processes"]) as clients:
        opened = clients.open(list(range(len(specs))), limit=50)
        if opened["failed"]:
            raise RuntimeError(f"W3 {target.name}: {opened['failed']} sockets failed to open: {opened['errors']}")
        [step] = run_steps(target, clients, specs, config, [config["w3_rate"]], config["w3_seconds"], bar, "W3")
    return {"sockets": len(specs), "step": step}


def run_w2(target, config: dict, bar=None) -> dict:
    bar = bar or NoBar()
    total, size = config["w2_sockets"], config["w2_room_size"]
    specs = [target.spec(i, i // size, None, worker=0) for i in range(total)]
    pids = target.server_pids()
    samples = []
    with Clients(specs, processes=config["w2_processes"]) as clients:
        meter = meter_for(target, clients)

        def tick() -> None:
            bar.n = clients.opened()
            bar.refresh()

        def sample(planned: int) -> None:
            time.sleep(1.0)  # let the server settle (and Python free what it frees)
            samples.append({"planned": planned, "sockets": clients.opened(), "rss_kib": rss_kib(pids)})

        warm, burst = config["w2_warmup"], config["w2_burst"]
        paced_in_flight = config["w2_paced_in_flight"]
        bar.set_postfix_str("")
        bar.set_description_str(f"W2 {target.name} warm-up")
        batches = [clients.open(list(range(warm)), limit=paced_in_flight, tick=tick)]
        sample(warm)
        bar.set_description_str(f"W2 {target.name} paced")
        at = warm
        while at < total - burst:
            upto = min(total - burst, (at // config["w2_batch"] + 1) * config["w2_batch"])
            batches.append(clients.open(list(range(at, upto)), limit=paced_in_flight, tick=tick))
            at = upto
            sample(upto)
        bar.set_description_str(f"W2 {target.name} burst of {burst}")
        burst_result = clients.open(list(range(total - burst, total)), limit=0, tick=tick)
        sample(total)
        # Idle: what the server does with nothing sent, once it has finished with the burst.
        bar.set_description_str(f"W2 {target.name} idle {config['w2_idle_seconds']} s")
        # At least w2_settle_seconds, then until a second with the server under 10% of a core (30 s
        # at most): the burst's tail (joins, presence updates) is not idle work.
        settle_start = time.time()
        time.sleep(config["w2_settle_seconds"])
        previous = meter.sample()
        while time.time() < settle_start + config["w2_settle_seconds"] + 30:
            time.sleep(1.0)
            now = meter.sample()
            share, previous = server_share(CpuMeter.percent(previous, now)), now
            if share < 10:
                break
        settled = round(time.time() - settle_start, 1)
        before = previous = meter.sample()
        series = []  # the server's share second by second: is it settled, or periodic?
        while time.time() < before["t"] + config["w2_idle_seconds"]:
            time.sleep(1.0)
            now = meter.sample()
            series.append(server_share(CpuMeter.percent(previous, now)))
            previous = now
        idle = CpuMeter.percent(before, previous)
        peak = rss_kib(pids)
    base, top = samples[0], samples[-1]
    xs, ys = [s["sockets"] for s in samples[1:]], [s["rss_kib"] for s in samples[1:]]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        sum((x - mean_x) ** 2 for x in xs), 1e-9
    )
    connect_ms = burst_result.pop("connect_ms")
    for batch in batches:
        batch.pop("connect_ms")
    return {
        "sockets": total,
        "open_failures": sum(b["failed"] for b in batches) + burst_result["failed"],
        "rss_samples": samples,
        "kib_per_socket": round((top["rss_kib"] - base["rss_kib"]) / max(top["sockets"] - base["sockets"], 1), 1),
        "kib_per_socket_slope": round(slope, 1),
        "rss_after_idle_kib": peak,
        "paced": batches,
        "burst": {**burst_result, **{f"connect_{k}": v for k, v in stats(connect_ms).items()}},
        "idle_cpu_percent": idle,
        "idle_server_cpu_percent": server_share(idle),
        "idle_server_cpu_series": series,
        "settle_seconds": settled,
    }


def w1_cpu(w1: dict, name: str) -> dict:
    """Server CPU per delivery and per message at W1's highest passing step, in microseconds: the
    server's CPU over the step's send window (% of a core / 100 = CPU seconds a second) divided by
    its deliveries/s, and by the messages stored a second (the product: acked ones) or, for the
    baselines, which store nothing, sent a second."""
    steps = [s for s in w1["steps"] if s["pass"] and s["offered_per_s"] == w1["best_offered_per_s"]]
    if not steps:
        return {"cpu_us_per_delivery": None, "cpu_us_per_message": None}
    step = steps[0]
    cpu = step["server_cpu_percent"] / 100  # CPU seconds per second
    messages = (step["acked"] if name == "product" else step["sent"]) / step["seconds"]
    return {
        "cpu_step_offered_per_s": step["offered_per_s"],
        "cpu_us_per_delivery": round(1e6 * cpu / step["deliveries_per_s"], 1) if step["deliveries_per_s"] else None,
        "cpu_us_per_message": round(1e6 * cpu / messages, 1) if messages else None,
        "cpu_counted": SERVER_CPU[name],
    }


# Report ----------------------------------------------------------------------------------------


def ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'MISS'} ({text})"


def summary_rows(data: dict) -> list[list]:
    r = data["results"]

    def get(target: str, *path):
        value = r.get(target)
        for key in path:
            if value is None:
                return None
            value = value.get(key)
        return value

    rows = []
    w1 = {t: get(t, "w1", "figure_deliveries_per_s") for t in TARGETS}
    if any(v is not None for v in w1.values()):
        p, n, b = w1["product"], w1["naive"], w1["bare"]
        goals = []
        if ratio(p, n) is not None:
            goals.append(
                verdict(
                    ratio(p, n) >= TARGETS_GOALS["w1_vs_naive"],
                    f"{ratio(p, n)}x naive, goal >= {TARGETS_GOALS['w1_vs_naive']:g}x",
                )
            )
        if ratio(p, b) is not None:
            goals.append(
                verdict(
                    ratio(p, b) >= TARGETS_GOALS["w1_vs_bare"],
                    f"{ratio(p, b)}x bare, goal >= {TARGETS_GOALS['w1_vs_bare']:g}x",
                )
            )
        rows.append(
            ["W1 deliveries/s (0 lost, p99 < 200 ms)", p, n, b, ratio(p, n), ratio(p, b), "; ".join(goals) or "-"]
        )
        goal = TARGETS_GOALS["w1_cpu_us_per_delivery"]
        per_delivery = [get(t, "w1", "cpu_us_per_delivery") for t in TARGETS]
        per_message = [get(t, "w1", "cpu_us_per_message") for t in TARGETS]
        p, n, b = per_delivery
        rows.append(
            ["W1 server CPU per delivery, us (at that step)", p, n, b, ratio(p, n), ratio(p, b)]
            + [verdict(p <= goal, f"{p} us, goal <= {goal}") if p is not None else "-"]
        )
        p, n, b = per_message
        rows.append(["W1 server CPU per message stored, us (baselines: sent)", p, n, b, ratio(p, n), ratio(p, b), "-"])
    if any(get(t, "w2") for t in TARGETS):
        kib = {t: get(t, "w2", "kib_per_socket") for t in TARGETS}
        slope = {t: get(t, "w2", "kib_per_socket_slope") for t in TARGETS}
        cpu = {t: get(t, "w2", "idle_server_cpu_percent") for t in TARGETS}
        rate = {t: get(t, "w2", "burst", "per_s") for t in TARGETS}
        fails = {t: get(t, "w2", "burst", "failed") for t in TARGETS}
        sockets = next(get(t, "w2", "sockets") for t in TARGETS if get(t, "w2"))
        burst = next(get(t, "w2", "burst", "sockets") for t in TARGETS if get(t, "w2"))

        kib_goal, idle_goal = TARGETS_GOALS["w2_kib"], TARGETS_GOALS["w2_idle_cpu"]
        burst_goal = TARGETS_GOALS["w2_burst_per_s"]

        def row(label, values, goal):
            p, n, b = (values[t] for t in TARGETS)
            rows.append([label, p, n, b, ratio(p, n), ratio(p, b), goal(p) if p is not None else "-"])

        row(
            f"W2 KiB per socket ({sockets} sockets)",
            kib,
            lambda p: verdict(p <= kib_goal, f"{p} <= {kib_goal}" if p <= kib_goal else f"{p} > {kib_goal}"),
        )
        row("W2 KiB per socket, slope", slope, lambda p: "-")
        row("W2 idle CPU, % of a core", cpu, lambda p: verdict(p < idle_goal, f"{p}, goal < {idle_goal}"))
        row(
            f"W2 burst of {burst}: connects+joins/s (successful)",
            rate,
            lambda p: verdict(p >= burst_goal, f"{p}/s, goal >= {burst_goal}/s"),
        )
        row(f"W2 burst of {burst}: failures", fails, lambda p: verdict(p == 0, f"{p} failed"))
    if any(get(t, "w3") for t in TARGETS):
        p50 = {t: get(t, "w3", "step", "ack" if t == "product" else "echo", "p50_ms") for t in TARGETS}
        p99 = {t: get(t, "w3", "step", "ack" if t == "product" else "echo", "p99_ms") for t in TARGETS}
        for label, values in (("p50", p50), ("p99", p99)):
            p, n, b = (values[t] for t in TARGETS)
            goal = "-"
            if label == "p99" and p is not None:
                limit = TARGETS_GOALS["w3_p99"]
                goal = verdict(p < limit, f"{p} ms, goal < {limit}")
            rows.append([f"W3 send->ack {label} ms (baselines: echo)", p, n, b, ratio(p, n), ratio(p, b), goal])
    return rows


W1_HEADERS = "W1 target,offered/s,sent/s,unacked,deliv/s,lost,dup,p50 ms,p90 ms,p99 ms,max ms,drain s,server%,clients%,cpu%,pass".split(
    ","
)


def w1_rows(data: dict) -> list[list]:
    rows = []
    for t in TARGETS:
        for s in (data["results"].get(t, {}).get("w1") or {}).get("steps", []):
            cpu = s["cpu_percent"]
            rows.append(
                [
                    t,
                    s["offered_per_s"],
                    s["sent_per_s"],
                    s["unacked"],
                    s["deliveries_per_s"],
                    s["lost"],
                    s["duplicates"],
                ]
                + [s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"], s["drain_seconds"]]
                + [s["server_cpu_percent"], cpu["clients"], cpu["machine"], "yes" if s["pass"] else "NO"]
            )
    return rows


def report(data: dict) -> str:
    m, c = data["machine"], data["config"]
    parts = [
        f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, Django {m['django']}, channels "
        f"{m['channels']}, daphne {m['daphne']}, channels-redis {m['channels_redis']}, {m['redis_server']}; "
        f"{data['mode']} run{', product on ' + data['database'] if data.get('database') else ''}; the machine was "
        f"{data.get('machine_busy_before_percent', '?')}% busy (of {100 * m['cpu_count']}%) before the run started"
    ]
    if any((data["results"].get(t) or {}).get("w1") for t in TARGETS):
        parts.append(
            f"W1 fan-out: {c['w1_rooms'] * c['w1_room_size']} sockets in {c['w1_rooms']} rooms of {c['w1_room_size']}, "
            f"2 senders a room, {c['w1_seconds']} s a step (product and naive: 2 workers)\n"
            + table(W1_HEADERS, w1_rows(data))
        )
    w2 = [(t, data["results"][t]["w2"]) for t in TARGETS if (data["results"].get(t) or {}).get("w2")]
    if w2:
        counts = [s.get("planned", s["sockets"]) for s in w2[0][1]["rss_samples"]]
        headers = ["W2 RSS MiB at", *map(str, counts), "open", "failed", "burst s", "burst p99 ms", "idle server%"]
        rows = [
            [t, *[round(s["rss_kib"] / 1024, 1) for s in r["rss_samples"]], r["rss_samples"][-1]["sockets"]]
            + [r["open_failures"], r["burst"]["seconds"], r["burst"]["connect_p99_ms"], r["idle_server_cpu_percent"]]
            for t, r in w2
        ]
        errors = [f"{t}: {e} x{n}" for t, r in w2 for b in [*r["paced"], r["burst"]] for e, n in b["errors"].items()]
        parts.append(
            "W2 idle capacity (one worker; RSS at each planned socket count, `open` = sockets actually open)\n"
            + table(headers, rows)
            + ("\nOpen failures (first kinds): " + "; ".join(errors) if errors else "")
        )
    w3 = [(t, data["results"][t]["w3"]["step"]) for t in TARGETS if (data["results"].get(t) or {}).get("w3")]
    if w3:
        headers = "W3 target,sent/s,unacked,lost,ack p50,ack p99,ack max,echo p50,echo p99,deliv p99,server%".split(",")
        rows = [
            [t, s["sent_per_s"], s["unacked"], s["lost"]]
            + [(s["ack"] or {}).get(k) for k in ("p50_ms", "p99_ms", "max_ms")]
            + [s["echo"]["p50_ms"], s["echo"]["p99_ms"], s["p99_ms"], s["server_cpu_percent"]]
            for t, s in w3
        ]
        parts.append(
            f"W3 send-to-ack: {2 * c['w3_rooms']} sockets, {c['w3_rate']} msg/s for {c['w3_seconds']} s\n"
            + table(headers, rows)
        )
    if any((data["results"].get(t) or {}).get("w4") for t in TARGETS):
        sizes = ", ".join(f"{x:,}" for x in c["w4_sizes"])
        parts.append(
            f"W4 big room: one room filled through {sizes} sockets (2 probes included; one user per socket in the "
            f"product), {c['w4_in_flight']} joins in flight per client process ({c['w4_processes']} processes), "
            f"the probes sending {c['w4_probe_rate']} msg/s throughout; sizes are cumulative points of one fill. "
            "server CPU and bytes (every frame received, all sockets) are totals since the fill began\n"
            + table(W4_HEADERS, w4_rows(data["results"], TARGETS))
        )
        parts.append(
            f"W4 messages: during the fill (between the probes), then {c['w4_rate']} msg/s for {c['w4_seconds']} s "
            "into the full room from two of its sockets (lost and deliveries: the room minus the probes)\n"
            + table(W4_MESSAGE_HEADERS, w4_message_rows(data["results"], TARGETS))
            + "".join(
                f"\nW4 {t} stopped: {w4['stopped']}"
                + (
                    f"; then, after {a['seconds']} s: {a['open']} sockets, {a['cpu_ms_per_socket']} ms of server CPU "
                    f"and {round(a['bytes_per_socket'] / 1024, 1)} KiB received per socket"
                    if (a := w4.get("at_stop"))
                    else ""
                )
                for t in TARGETS
                if (w4 := (data["results"].get(t) or {}).get("w4") or {}).get("stopped")
            )
        )
    rows = summary_rows(data)
    if "w4_sizes" in c:
        rows += w4_summary_rows(data["results"], TARGETS, c["w4_sizes"], ratio, verdict)
    parts.append(table(["Summary", "product", "naive", "bare", "prod/naive", "prod/bare", "target"], rows))
    parts.append(
        "Footer: W1 and W3 lift the product's per-socket and per-user frame limits through the environment "
        f"({', '.join(sorted(LIFTED))} = {next(iter(LIFTED.values()))}): one sender goes above 20 msg/s at the high "
        "steps. W2 runs with every default (20 sockets per user, 250 users).\n"
        "Clients connect straight to the server processes; they share the machine's cores with the servers, "
        "Redis and PostgreSQL, so high steps partly measure the clients. server% = workers (or the baseline's "
        "processes) + Redis + PostgreSQL, % of one core over a step's send window; cpu% = whole machine "
        f"(out of {100 * m['cpu_count']}%). CPU per delivery and per message: server% of W1's highest passing "
        "step / 100 / its deliveries/s (or messages/s: the product's acked, the baselines' sent). W4 runs with "
        "every default, one user per socket; its server CPU counts the same processes as server%"
        ". W2 memory = server process RSS only (not Redis/PostgreSQL). "
        "W3: the baselines have no ack; their column is send -> the sender's own copy."
    )
    return "\n\n".join(parts)


def plots(data: dict, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = {"product": "tab:blue", "naive": "tab:orange", "bare": "tab:green"}
    results = data["results"]
    if any((results.get(t) or {}).get("w1") for t in TARGETS):
        fig, ax = plt.subplots(figsize=(8, 5))
        for t in TARGETS:
            steps = [s for s in ((results.get(t) or {}).get("w1") or {}).get("steps", []) if s["p99_ms"] is not None]
            if steps:
                x = [s["offered_per_s"] for s in steps]
                ax.plot(x, [s["p99_ms"] for s in steps], "-o", color=colors[t], label=f"{t} p99")
                ax.plot(x, [s["p50_ms"] for s in steps], "--", marker=".", color=colors[t], label=f"{t} p50")
        ax.axhline(200, color="red", linewidth=0.8, linestyle=":", label="200 ms")
        ax.set_xscale("log", base=2)
        offered = sorted(
            {s["offered_per_s"] for t in TARGETS for s in ((results.get(t) or {}).get("w1") or {}).get("steps", [])}
        )
        ax.set_xticks(offered, [str(x) for x in offered])
        ax.set_yscale("log")
        ax.set_xlabel("offered load (messages/s, all senders)")
        ax.set_ylabel("end-to-end latency (ms)")
        ax.set_title("W1 fan-out: 500 sockets, 10 rooms of 50")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        path = directory / "w1-latency.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if any((results.get(t) or {}).get("w2") for t in TARGETS):
        fig, ax = plt.subplots(figsize=(8, 5))
        for t in TARGETS:
            w2 = (results.get(t) or {}).get("w2")
            if w2:
                ax.plot(
                    [s["sockets"] for s in w2["rss_samples"]],
                    [s["rss_kib"] / 1024 for s in w2["rss_samples"]],
                    "-o",
                    color=colors[t],
                    label=f"{t} ({w2['kib_per_socket']} KiB/socket)",
                )
        ax.set_xlabel("open sockets (joined, idle)")
        ax.set_ylabel("server RSS (MiB)")
        ax.set_title("W2 memory against open sockets, one worker")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = directory / "w2-memory.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# Main ------------------------------------------------------------------------------------------


class LineBar:
    """The progress bar's stand-in when stdout is not a terminal (a log file, CI): a plain line
    when the phase changes and every `every` seconds, instead of a redrawn line of carriage
    returns. The calls are tqdm's that this module and tests/support/load.py make."""

    def __init__(self, *, total: int = 0, every: float = 15.0, out=None) -> None:
        self.n, self.total, self.every, self.out = 0, total, every, out or sys.stdout
        self.description, self.postfix = "", ""
        self.started = time.monotonic()
        self.printed = 0.0

    def _line(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.description or (not force and now - self.printed < self.every):
            return
        self.printed = now
        progress = f" {self.n}/{self.total}" if self.total else ""
        postfix = f" ({self.postfix})" if self.postfix else ""
        print(f"[{now - self.started:6.0f} s] {self.description}:{progress}{postfix}", file=self.out, flush=True)

    def set_description_str(self, text: str = "", refresh: bool = True) -> None:
        changed = text != self.description
        self.description = text
        self._line(force=changed)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text
        self._line()

    def update(self, n: float = 1) -> None:
        self.n += int(n)
        self._line()

    def refresh(self) -> None:
        self._line()

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total or 0

    def close(self) -> None:
        pass


def progress_bar(total: int):
    """tqdm on a terminal; plain periodic lines otherwise."""
    if sys.stdout.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="", dynamic_ncols=True, leave=False, file=sys.stdout)
    return LineBar(total=total)


def run(config: dict, targets: list[str], workloads: list[str], data: dict, bar) -> None:
    for name in targets:
        result = data["results"].setdefault(name, {})
        if "w1" in workloads or "w3" in workloads:
            env = LIFTED if name == "product" else None
            with make_target(name, workers=2, rooms=config["w1_rooms"], env=env) as target:
                if name == "product":
                    data["database"] = target.database
                if "w3" in workloads:  # first, on the fresh servers
                    result["w3"] = run_w3(target, config, bar)
                if "w1" in workloads:
                    result["w1"] = run_w1(target, config, bar)
                    result["w1"].update(w1_cpu(result["w1"], name))
        if "w2" in workloads:
            rooms = -(-config["w2_sockets"] // config["w2_room_size"])
            with make_target(name, workers=1, rooms=rooms) as target:
                bar.reset(total=config["w2_sockets"])
                result["w2"] = run_w2(target, config, bar)
        if "w4" in workloads:
            # One user per socket (the product's defaults otherwise, the per-user socket cap included).
            with make_target(name, workers=2, rooms=1, users=config["w4_sizes"][-1]) as target:
                result["w4"] = run_w4(target, config, bar)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter steps, 2,000 sockets in W2 and a room of 600 in W4"
    )
    parser.add_argument("--smoke", action="store_true", help="W1 on the product at a modest load; fails on a loss")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, e.g. w1,w3")
    parser.add_argument("--targets", default=",".join(TARGETS), help="e.g. product,naive")
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/bench.json)")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier run and exit")
    options = parser.parse_args()
    if options.report:
        print(report(json.loads(options.report.read_text())))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    if options.smoke:
        with ProductTarget(workers=2, rooms=SMOKE["w1_rooms"], env=LIFTED) as target:
            result = run_w1(target, SMOKE)
        step = result["steps"][0]
        print(
            json.dumps(
                {k: step[k] for k in ("sent", "acked", "expected", "deliveries", "lost", "duplicates", "p99_ms")}
            )
        )
        return 0 if step["lost"] == 0 and step["duplicates"] == 0 and step["unacked"] == 0 else 1
    targets = [t for t in options.targets.split(",") if t]
    workloads = [w for w in options.only.lower().split(",") if w]
    unknown = set(targets) - set(TARGETS) | set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    config = QUICK if options.quick else FULL
    output = options.output or RESULTS / ("bench-quick.json" if options.quick else "bench.json")
    started = time.time()
    data = {"mode": "quick" if options.quick else "full", "config": config, "machine": machine_info(), "results": {}}
    data["lifted_for_w1_w3"] = LIFTED
    # What the machine does before anything starts here (other users of the cores): a noisy run says so.
    before = CpuMeter({}).sample()
    time.sleep(3)
    data["machine_busy_before_percent"] = CpuMeter.percent(before, CpuMeter({}).sample())["machine"]
    bar = progress_bar(len(config["w1_rates"]))
    try:
        run(config, targets, workloads, data, bar)
    finally:
        bar.close()
        data["seconds"] = round(time.time() - started)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, indent=2) + "\n")
    images = plots(data, output.parent)
    print(report(data))
    print(f"\nTook {data['seconds']} s. Figures: {output}, " + ", ".join(str(p) for p in images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
