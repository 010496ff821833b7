"""Compare channels-redis' RedisChannelLayer (CHAT_CHANNEL_LAYER=redis) with RedisPubSubChannelLayer
(CHAT_CHANNEL_LAYER=redis-pubsub) on this machine.

    .venv/bin/python -m bench.layers            # full run, under 5 minutes
    .venv/bin/python -m bench.layers --quick    # about a minute, smaller figures

Both layers run in the same session with the same parameters; every process is started here and
stopped here. Times are `time.time()` stamps taken in different processes of one machine.

A. The raw layer, without Django consumers. A redis-server of its own; 2 receiver processes each
   create K channels with `layer.new_channel()`, add them to one group and await `layer.receive()`
   on each (one task per channel, as Daphne does per consumer). A third process group_sends
   messages carrying a timestamp: a burst of M messages awaited one after the other (as fast as
   one sender can go), then fixed offered rates. Between phases the sender waits until every
   delivery arrived or none came for 2 s. Lost = sent x 2K - delivered. The layer is configured by
   config.settings (capacity, expiry), as the workers configure it.

B. End to end through the app: bin/cluster with 2 Daphne workers on a throwaway PostgreSQL.
   200 sockets logged in as the demo users, straight to the worker ports (alternating), in
   4 rooms of 50 (each room has 25 sockets on each worker, so every message crosses workers).
   Two client processes hold 100 sockets each; 2 senders per room (one per worker and per client
   process) send `send` frames whose body carries a timestamp and a step number, open loop, at a
   fixed total rate stepped up. Each step runs alone: the next starts once every send is acked and
   no delivery came for 2 s, so an overloaded step's backlog does not spill into the next. Every
   receiver computes latency = arrival - send stamp (it includes the database write).
   Expected deliveries = acked messages x 50 members; deliveries/s = deliveries / (last - start).
   CPU shares are measured from /proc over each step's send window (100% = one core; the
   machine has os.cpu_count() cores, shared by workers, Redis, PostgreSQL and the clients).
   Peak RSS is the workers' VmHWM after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from array import array
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path

from tests.support.cpu import CpuMeter, parent_pid, pids_where
from tests.support.load import percentile
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

LAYERS = ["redis", "redis-pubsub"]
USERS = ["alice", "bob", "carol", "admin"]
QUIET = 2.0  # seconds without a delivery that end a drain
FULL = {
    "a_channels": 50,
    "a_phases": [{"count": 5000}, {"rate": 250, "seconds": 3}, {"rate": 1000, "seconds": 3}],
    "b_rooms": 4,
    "b_room_size": 50,
    "b_rates": [20, 50, 100, 200],
    "b_seconds": 8,
}
QUICK = {**FULL, "a_phases": [{"count": 1000}, {"rate": 500, "seconds": 1}], "b_rates": [50, 200], "b_seconds": 4}


# Measuring -------------------------------------------------------------------------------------


def vm_hwm_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


# A. The raw layer ------------------------------------------------------------------------------


def django_layer(redis_url: str, layer: str):
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        REDIS_URL=redis_url,
        CHAT_CHANNEL_LAYER=layer,
        DJANGO_SECRET_KEY="x",
        DJANGO_LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from channels.layers import get_channel_layer

    return get_channel_layer()


def a_receiver(redis_url, layer, k, phases, progress, ready, done, expected, out) -> None:
    channel_layer = django_layer(redis_url, layer)

    async def main() -> None:
        latencies = [array("d") for _ in range(phases)]
        last = [0.0] * phases
        count, last_arrival = 0, time.time()

        async def pump(channel: str) -> None:
            nonlocal count, last_arrival
            while True:
                message = await channel_layer.receive(channel)
                now = time.time()
                latencies[message["p"]].append((now - message["t"]) * 1000)
                last[message["p"]] = now
                count, last_arrival = count + 1, now
                progress.value = count

        channels = [await channel_layer.new_channel() for _ in range(k)]
        for channel in channels:
            await channel_layer.group_add("bench", channel)
        tasks = [asyncio.create_task(pump(channel)) for channel in channels]
        ready.put(os.getpid())
        # The stop signal comes from another process: poll it.
        while not (done.is_set() and (count >= expected.value or time.time() - last_arrival > QUIET)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.put({"latencies": [a.tobytes() for a in latencies], "last": last, "peak_rss_mib": round(peak, 1)})

    asyncio.run(main())


def a_sender(redis_url, layer, phases, progress, deliveries_per_message, pids, out) -> None:
    channel_layer = django_layer(redis_url, layer)
    meter = CpuMeter(
        {"sender": lambda: [os.getpid()], "receivers": lambda: pids["receivers"], "redis": lambda: [pids["redis"]]}
    )
    pad = "x" * 200  # about the size of a chat.frame event
    refused = [0]  # copies that RedisChannelLayer refused: a receiving process' queue held `capacity` messages

    class CountRefusals(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "over capacity" in record.msg:
                refused[0] += record.args[0]

    core_logger = logging.getLogger("channels_redis.core")
    core_logger.setLevel(logging.INFO)
    core_logger.propagate = False
    core_logger.addHandler(CountRefusals())

    async def main() -> list[dict]:
        results, sent_total = [], 0
        for index, phase in enumerate(phases):
            before, start, sent, refused[0] = meter.sample(), time.time(), 0, 0
            while True:
                if "count" in phase:
                    if sent >= phase["count"]:
                        break
                else:
                    due = start + sent / phase["rate"]
                    if due >= start + phase["seconds"]:
                        break
                    await asyncio.sleep(max(0.0, due - time.time()))
                await channel_layer.group_send("bench", {"type": "bench", "t": time.time(), "p": index, "pad": pad})
                sent += 1
            send_seconds = time.time() - start
            sent_total += sent
            seen, quiet_since = -1, time.time()
            while (delivered := sum(p.value for p in progress)) < sent_total * deliveries_per_message:
                if delivered != seen:
                    seen, quiet_since = delivered, time.time()
                elif time.time() - quiet_since > QUIET:
                    break
                await asyncio.sleep(0.05)
            cpu = CpuMeter.percent(before, meter.sample())
            results.append(
                {"sent": sent, "start": start, "send_seconds": send_seconds, "refused": refused[0], "cpu_percent": cpu}
            )
        return results

    out.put(asyncio.run(main()))


def run_a(layer: str, config: dict) -> dict:
    ctx = mp.get_context("spawn")
    k, phases = config["a_channels"], config["a_phases"]
    with RedisServer() as redis:
        progress = [ctx.Value("q", 0, lock=False) for _ in range(2)]
        ready, out, sender_out, done = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
        expected = ctx.Value("q", 0, lock=False)
        args = (redis.url, layer, k, len(phases))
        receivers = [ctx.Process(target=a_receiver, args=(*args, p, ready, done, expected, out)) for p in progress]
        started = []
        try:
            for process in receivers:
                process.start()
                started.append(process)
            pids = {"redis": redis.process.pid, "receivers": [p.pid for p in receivers]}
            sender = ctx.Process(target=a_sender, args=(redis.url, layer, phases, progress, 2 * k, pids, sender_out))
            for _ in receivers:
                ready.get(timeout=60)
            sender.start()
            started.append(sender)
            sent = sender_out.get(timeout=600)
            expected.value = sum(r["sent"] for r in sent) * 2 * k
            done.set()
            received = [out.get(timeout=120) for _ in receivers]
        finally:
            for process in started:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
                    process.join()
    results = []
    for index, (phase, send) in enumerate(zip(phases, sent, strict=True)):
        latencies = [x for r in received for x in array("d", r["latencies"][index])]
        last = max(r["last"][index] for r in received)
        expected_here = send["sent"] * 2 * k
        results.append(
            {
                "phase": f"burst {phase['count']}" if "count" in phase else f"{phase['rate']}/s x {phase['seconds']}s",
                **phase,
                "sent": send["sent"],
                "sent_per_s": round(send["sent"] / send["send_seconds"]),
                "deliveries": len(latencies),
                "deliveries_per_s": round(len(latencies) / max(last - send["start"], 1e-9)) if latencies else 0,
                "lost": expected_here - len(latencies),
                "dropped_full_queue": send["refused"] * k,  # each refused copy carried k channels
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "max_ms": round(max(latencies), 1) if latencies else None,
                "cpu_percent": send["cpu_percent"],
            }
        )
    return {"phases": results, "receiver_peak_rss_mib": [r["peak_rss_mib"] for r in received]}


# B. End to end ---------------------------------------------------------------------------------


async def open_socket(spec: dict):
    import websockets

    headers = {"Cookie": spec["cookie"], "Origin": spec["origin"]}
    ws = await websockets.connect(spec["url"], additional_headers=headers, open_timeout=60, close_timeout=2)
    await ws.send(json.dumps({"type": "join", "room": spec["room"], "since": 0, "ref": "j"}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame["type"] == "joined":
            return ws
        if frame["type"] == "error":
            raise RuntimeError(f"join refused: {frame}")


def b_client(specs: list[dict], barrier, commands, results) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, barrier.wait, 60)
        start = time.time()
        sockets = await asyncio.gather(*(open_socket(spec) for spec in specs), return_exceptions=True)
        failed = [s for s in sockets if isinstance(s, BaseException)]
        results.put(
            {"seconds": time.time() - start, "failed": len(failed), "error": repr(failed[0]) if failed else None}
        )
        latencies, last, acks, sent = defaultdict(list), Counter(), Counter(), Counter()
        errors, last_any = Counter(), time.time()

        async def read(ws) -> None:
            nonlocal last_any
            async for text in ws:
                frame = json.loads(text)
                if frame["type"] == "message":
                    now, body = time.time(), json.loads(frame["message"]["body"])
                    last_any = now
                    latencies[body["s"]].append((now - body["t"]) * 1000)
                    last[body["s"]] = max(last[body["s"]], now)
                elif frame["type"] == "ack":
                    acks[int(frame["client_id"].split("-")[0])] += 1
                elif frame["type"] == "error":
                    errors[frame["code"]] += 1

        async def send(ws, spec: dict, step: dict) -> None:
            s, g, senders = step["index"], spec["sender"], step["senders"]
            rate, n = step["rate"] / senders, 0
            while (due := step["start"] + (n + g / senders) / rate) < step["end"]:
                await asyncio.sleep(max(0.0, due - time.time()))
                body = json.dumps({"t": time.time(), "s": s, "g": g, "n": n})
                frame = {"type": "send", "room": spec["room"], "body": body, "client_id": f"{s}-{g}-{n}"}
                await ws.send(json.dumps(frame))
                sent[s], n = sent[s] + 1, n + 1

        live = [(spec, ws) for spec, ws in zip(specs, sockets, strict=True) if not isinstance(ws, BaseException)]
        readers = [asyncio.create_task(read(ws)) for _, ws in live]
        while (step := await loop.run_in_executor(None, commands.get)) is not None:
            await asyncio.gather(*(send(ws, spec, step) for spec, ws in live if spec["sender"] is not None))
            # Drained: every send acked and no delivery for QUIET s (60 s at most).
            s = step["index"]
            while (acks[s] < sent[s] or time.time() - last_any < QUIET) and time.time() < step["end"] + 60:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            results.put({"drained": time.time()})
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for _, ws in live), return_exceptions=True)
        results.put({"latencies": dict(latencies), "last": last, "acks": acks, "sent": sent, "errors": dict(errors)})

    asyncio.run(main())


def run_b(layer: str, config: dict) -> dict:
    from tests.support.cluster_server import ClusterServer
    from tests.support.postgres_server import PostgresServer

    rooms, size = config["b_rooms"], config["b_room_size"]
    # Four demo users hold all the sockets: lift the per-user caps as well as the socket ones.
    env = {
        "CHAT_CHANNEL_LAYER": layer,
        **dict.fromkeys(("CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST", "CHAT_USER_RATE_PER_SECOND"), "1000"),
        **dict.fromkeys(("CHAT_USER_RATE_BURST", "CHAT_MAX_SOCKETS_PER_USER"), "1000"),
    }
    with PostgresServer() as pg, ClusterServer(workers=2, database_url=pg.url, env=env) as cluster:
        cluster.shell(
            f"from chat import services\nfor i in range({rooms}): services.room_create(slug=f'bench{{i}}', name=f'Bench {{i}}')"
        )
        cookies = [cluster.login(user, worker=1) for user in USERS]
        specs: list[list[dict]] = [[], []]
        for i in range(rooms * size):
            room, j = divmod(i, size)
            worker = 1 + i % 2
            spec = {"room": f"bench{room}", "url": cluster.ws_url(worker), "origin": cluster.base_url(worker)}
            spec.update(cookie=cookies[i % len(USERS)], sender=2 * room + (j == 3) if j in (0, 3) else None)
            specs[(i // 2) % 2].append(spec)
        ctx = mp.get_context("spawn")
        barrier, results, commands = ctx.Barrier(3), ctx.Queue(), [ctx.Queue(), ctx.Queue()]
        clients = [
            ctx.Process(target=b_client, args=(s, barrier, q, results)) for s, q in zip(specs, commands, strict=True)
        ]
        postmaster = int((pg.tmpdir / "data" / "postmaster.pid").read_text().split()[0])
        redis_port = cluster.state["redis_url"].rsplit(":", 1)[1].split("/")[0]
        meter = CpuMeter(
            {
                "workers": lambda: [w["pid"] for w in cluster.state["workers"]],
                "redis": lambda: pids_where(lambda pid, cmd: "redis-server" in cmd and f":{redis_port}" in cmd),
                "postgres": lambda: [postmaster, *pids_where(lambda pid, cmd: parent_pid(pid) == postmaster)],
                "clients": lambda: [c.pid for c in clients],
            }
        )
        try:
            for client in clients:
                client.start()
            barrier.wait(timeout=60)
            joined = [results.get(timeout=120) for _ in clients]
            steps, cpu = [], []
            for index, rate in enumerate(config["b_rates"]):  # one at a time, each drained before the next
                start = time.time() + 0.5
                step = {"index": index, "rate": rate, "start": start, "end": start + config["b_seconds"]}
                step["senders"] = 2 * rooms
                for queue in commands:
                    queue.put(step)
                time.sleep(max(0.0, step["start"] - time.time()))
                before = meter.sample()
                time.sleep(max(0.0, step["end"] - time.time()))
                cpu.append(CpuMeter.percent(before, meter.sample()))
                step["drained"] = max(results.get(timeout=120)["drained"] for _ in clients)
                steps.append(step)
            for queue in commands:
                queue.put(None)
            done = [results.get(timeout=60) for _ in clients]
            rss = [vm_hwm_mib(w["pid"]) for w in cluster.state["workers"]]
            # channels-redis logs (INFO) each group_send that found a receiving process' queue full.
            over_capacity = sum(cluster.worker_log(w).count("over capacity") for w in (1, 2))
        finally:
            for client in (c for c in clients if c.pid is not None):
                client.join(timeout=15)
                if client.is_alive():
                    client.kill()
                    client.join()
    out = []
    for s, step in enumerate(steps):
        latencies = [x for d in done for x in d["latencies"].get(s, [])]
        acked, sent = sum(d["acks"][s] for d in done), sum(d["sent"][s] for d in done)
        window = max(max(d["last"].get(s, 0) for d in done) - step["start"], config["b_seconds"])
        out.append(
            {
                "offered_per_s": step["rate"],
                "sent": sent,
                "acked": acked,
                "acked_per_s": round(acked / config["b_seconds"], 1),
                "drain_seconds": round(max(0.0, max(d["last"].get(s, 0) for d in done) - step["end"]), 1),
                "unacked": sent - acked,
                "expected_deliveries": acked * size,
                "deliveries": len(latencies),
                "deliveries_per_s": round(len(latencies) / window),
                "lost": acked * size - len(latencies),
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "max_ms": round(max(latencies), 1) if latencies else None,
                "cpu_percent": cpu[s],
            }
        )
    return {
        "connect_join_seconds": round(max(j["seconds"] for j in joined), 2),
        "connect_failures": sum(j["failed"] for j in joined),
        "connect_error": next((j["error"] for j in joined if j["error"]), None),
        "steps": out,
        "errors": dict(sum((Counter(d["errors"]) for d in done), Counter())),
        "worker_peak_rss_mib": rss,
        "over_capacity_log_lines": over_capacity,
    }


# Report ----------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers, *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


A_COLUMNS = "phase layer sent_per_s deliveries_per_s lost dropped_full_queue p50_ms p99_ms max_ms".split()
A_CPU = "sender receivers redis machine".split()
A_HEADERS = "A phase,layer,sent/s,deliv/s,lost,dropped,p50 ms,p99 ms,max ms,send%,recv%,redis%,cpu%".split(",")
B_COLUMNS = "offered_per_s layer acked_per_s unacked drain_seconds deliveries_per_s expected_deliveries lost p50_ms p99_ms max_ms".split()
B_CPU = "workers redis postgres clients machine".split()
B_HEADERS = (
    "B msg/s,layer,acked/s,unacked,drain s,deliv/s,expected,lost,p50 ms,p99 ms,max ms,workers%,redis%,pg%,clients%,cpu%"
)


def report(data: dict) -> str:
    c, m = data["config"], data["machine"]

    def rows(part: str, key: str, columns: list[str], cpu: list[str]) -> list[list]:
        count = len(data[part][LAYERS[0]][key])
        return [
            [{**row, "layer": layer}[k] for k in columns] + [row["cpu_percent"][k] for k in cpu]
            for i in range(count)
            for layer in LAYERS
            for row in [data[part][layer][key][i]]
        ]

    extra = [
        [
            layer,
            data["b"][layer]["connect_join_seconds"],
            data["b"][layer]["connect_failures"],
            " / ".join(map(str, data["b"][layer]["worker_peak_rss_mib"])),
            " / ".join(map(str, data["a"][layer]["receiver_peak_rss_mib"])),
            data["b"][layer]["over_capacity_log_lines"],
            data["b"][layer]["errors"] or "none",
        ]
        for layer in LAYERS
    ]
    extra_headers = "layer,connect+join (s),failed,B worker peak RSS MiB,A receiver peak RSS MiB,over capacity,B errors"
    return "\n\n".join(
        [
            f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, channels-redis {m['channels_redis']}, "
            f"redis-py {m['redis_py']}, {m['redis_server']}",
            f"A. raw layer: 1 sender process, group of {2 * c['a_channels']} channels in 2 receiver processes "
            f"({c['a_channels']} each)\n" + table(A_HEADERS, rows("a", "phases", A_COLUMNS, A_CPU)),
            f"B. end to end: 2 Daphne workers + PostgreSQL, {c['b_rooms'] * c['b_room_size']} sockets in "
            f"{c['b_rooms']} rooms of {c['b_room_size']}, {2 * c['b_rooms']} senders, {c['b_seconds']} s a step\n"
            + table(B_HEADERS.split(","), rows("b", "steps", B_COLUMNS, B_CPU)),
            table(extra_headers.split(","), extra),
            "CPU columns: % of one core (cpu% is the whole machine, out of "
            f"{100 * m['cpu_count']}%), over each A phase including its drain, over each B step's send window.\n"
            "dropped: deliveries RedisChannelLayer refused, a receiving process' queue in Redis being at `capacity`.\n"
            "drain s: from a B step's last send to its last delivery. deliv/s: deliveries / (last delivery - start).",
        ]
    )


def machine_info() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            name.replace("-", "_"): metadata.version(name)
            for name in ("channels-redis", "channels", "daphne", "django")
        },
        "redis_py": metadata.version("redis"),
        "redis_server": " ".join(redis_version[:3]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run of about a minute with fewer steps")
    parser.add_argument(
        "--output", type=Path, help="JSON file (default bench/results/layers.json, or layers-quick.json)"
    )
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the table of an earlier run and exit")
    options = parser.parse_args()
    if options.report:
        print(report(json.loads(options.report.read_text())))
        return 0
    config = QUICK if options.quick else FULL
    output = options.output or ROOT / "bench" / "results" / ("layers-quick.json" if options.quick else "layers.json")
    started = time.time()
    data = {"mode": "quick" if options.quick else "full", "config": config, "machine": machine_info(), "a": {}, "b": {}}
    for layer in LAYERS:
        print(f"A: {layer} ...", flush=True)
        data["a"][layer] = run_a(layer, config)
    for layer in LAYERS:
        print(f"B: {layer} ...", flush=True)
        data["b"][layer] = run_b(layer, config)
    data["seconds"] = round(time.time() - started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n")
    print("\n" + report(data) + f"\n\nTook {data['seconds']} s. Figures: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
