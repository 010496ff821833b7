"""The load generator of `make bench` (bench/bench.py) and of tests/e2e/test_bench_smoke.py: client
processes (multiprocessing, spawn), each one asyncio loop holding many WebSocket clients.

The parent gives every process its share of the socket specs and then commands, one at a time,
through a queue; each process answers on a shared queue:

    {"op": "open", "indices": [...], "limit": N}   open those sockets (N at a time; 0: all at once)
    {"op": "step", ...}                            send open loop at a fixed total rate, then drain
    None                                           close every socket and stop

A spec says which target it speaks to (three adapters, differing only in URL, headers, join and
how frames look):

    product  ws://worker/ws/chat/, session cookie + Origin, `join` then `joined`; sends `send`
             {room, body, client_id}; deliveries are `message` frames; `ack` answers each send
    naive    ws://daphne/ws/chat/<room>/ (the Channels tutorial), no auth; sends {"message": body},
             gets {"message": body}, the sender included; no ack
    bare     the same wire as naive, on bench/bare_server.py

Every body is JSON {"t": send time, "s": step, "g": sender, "n": sequence number of that sender},
so each receiver computes latency (arrival - t, both time.time() on this machine) and counts each
(sender, n) once per socket: duplicates and losses are exact. WebSocket clients behave like
browser tabs: they send no WebSocket pings of their own (browsers never do; the `websockets`
library would every 20 s) and answer the server's pings, which every target sends (Daphne every
20 s, `websockets` every 20 s). Otherwise the library's defaults (max_queue 16).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import queue
import time
from array import array
from collections import Counter

QUIET = 2.0  # seconds without a delivery (and every send acked) that end a drain
MAX_DRAIN = 20.0  # seconds after a step's last send at most


def planned(step: dict, g: int) -> int:
    """How many messages sender `g` sends in `step` (open loop, so known in advance)."""
    rate, senders, n = step["rate"] / step["senders"], step["senders"], 0
    while step["start"] + (n + g / senders) / rate < step["end"]:
        n += 1
    return n


async def open_socket(spec: dict, on_frame=None):
    """A socket of `spec`, joined (product: its `joined` has arrived). `on_frame(data)` sees every
    frame received on the way, as bytes (the `joined` among them). Returns (socket, size of
    `joined` in bytes, or 0 for the baselines, which have no join)."""
    import websockets

    ws = await websockets.connect(
        spec["url"], additional_headers=spec.get("headers"), open_timeout=60, close_timeout=2, ping_interval=None
    )
    joined = 0
    if spec["kind"] == "product":
        try:
            await ws.send(json.dumps({"type": "join", "room": spec["room"], "ref": "j"}))
            while True:
                data = await asyncio.wait_for(ws.recv(decode=False), 60)
                if on_frame is not None:
                    on_frame(data)
                kind = frame_type(data)
                if kind == "joined":
                    joined = len(data)
                    break
                if kind == "error":
                    frame = json.loads(data)
                    if frame.get("ref") == "j":
                        raise RuntimeError(f"join refused: {frame}")
        except BaseException:
            await ws.close()
            raise
    return ws, joined


TYPE_PREFIX = b'{"type":"'


def frame_type(data: bytes) -> str | None:
    """The `type` of a product frame without parsing it (the server writes `type` first, compact):
    a room's presence frames can be large and many, and only some frames need reading."""
    if data.startswith(TYPE_PREFIX):
        end = data.find(b'"', len(TYPE_PREFIX))
        if end > 0:
            return data[len(TYPE_PREFIX) : end].decode()
    try:
        return json.loads(data).get("type")
    except (ValueError, AttributeError):
        return None


def client_main(specs: list[dict], commands, results, progress) -> None:
    """One client process: `specs` ({index: spec}) are its sockets; `progress` five shared
    counters that the parent reads: sockets opened here, deliveries here, bytes and frames received
    here, and frames other than `message` received here."""
    asyncio.run(_client(specs, commands, results, progress))


async def _client(specs: list[dict], commands, results, progress) -> None:
    loop = asyncio.get_running_loop()
    sockets: dict[int, object] = {}  # spec index -> open socket
    readers: dict[int, asyncio.Task] = {}
    # Per step: latencies (ms) of deliveries, of the sender's own copy (echo), of acks.
    latencies: dict[int, array] = {}
    echoes: dict[int, array] = {}
    ack_ms: dict[int, array] = {}
    seen: dict[int, set] = {}  # spec index -> {(step, sender, n)}
    counts = Counter()  # (what, step) -> count: delivered, unique, dup, acked, sent, last...
    last_delivery: dict[int, float] = {}
    sent_at: dict[str, float] = {}  # client_id -> send time, until its ack
    errors = Counter()
    closed = Counter()
    joined_sizes = array("q")  # bytes of each `joined` of the current open command
    state = {"last_any": time.time()}

    def on_body(index: int, spec: dict, text: str, now: float) -> None:
        body = json.loads(text)
        s = body["s"]
        key = (s, body["g"], body["n"])
        if key in seen[index]:
            counts["dup", s] += 1
            return
        seen[index].add(key)
        counts["unique", s] += 1
        latency = (now - body["t"]) * 1000
        latencies.setdefault(s, array("d")).append(latency)
        if body["g"] == spec["sender"]:
            echoes.setdefault(s, array("d")).append(latency)
        last_delivery[s] = now
        state["last_any"] = now
        progress[1] += 1

    async def read(index: int, ws) -> None:
        from websockets.exceptions import ConnectionClosedOK

        spec = specs[index]
        product = spec["kind"] == "product"
        try:
            while True:
                try:
                    data = await ws.recv(decode=False)
                except ConnectionClosedOK:
                    break
                now = time.time()
                count_bytes(data)
                if not product:
                    on_body(index, spec, json.loads(data)["message"], now)
                    continue
                kind = frame_type(data)
                if kind == "message":
                    on_body(index, spec, json.loads(data)["message"]["body"], now)
                    continue
                progress[4] += 1  # any other frame: presence, typing, ack...
                if kind == "ack":
                    frame = json.loads(data)
                    sent = sent_at.pop(frame["client_id"], None)
                    if sent is not None:
                        s = int(frame["client_id"].split("-")[0])
                        counts["acked", s] += 1
                        ack_ms.setdefault(s, array("d")).append((now - sent) * 1000)
                elif kind == "error":
                    errors[json.loads(data)["code"]] += 1
        except Exception as error:  # a socket that dies mid-run is reported, not fatal
            closed[type(error).__name__] += 1
        else:
            closed[f"closed {ws.close_code}"] += 1

    def count_bytes(data: bytes) -> None:
        progress[2] += len(data)
        progress[3] += 1

    def count_join_frame(data: bytes) -> None:
        count_bytes(data)
        progress[4] += 1

    async def open_one(index: int, limit: asyncio.Semaphore | None) -> float | str:
        async def go():
            started = time.time()
            ws, joined = await open_socket(specs[index], count_join_frame)
            if joined:
                joined_sizes.append(joined)
            sockets[index] = ws
            seen[index] = set()
            readers[index] = asyncio.create_task(read(index, ws))
            progress[0] += 1
            return time.time() - started

        try:
            if limit is None:
                return await go()
            async with limit:
                return await go()
        except Exception as error:
            return f"{type(error).__name__}: {error}"[:200]

    async def send(index: int, step: dict) -> None:
        spec, ws = specs[index], sockets[index]
        s, g, senders = step["index"], spec["sender"], step["senders"]
        rate, n = step["rate"] / senders, 0
        product = spec["kind"] == "product"
        while (due := step["start"] + (n + g / senders) / rate) < step["end"]:
            await asyncio.sleep(max(0.0, due - time.time()))
            now = time.time()
            body = json.dumps({"t": now, "s": s, "g": g, "n": n})
            if product:
                client_id = f"{s}-{g}-{n}-{step['tag']}"
                sent_at[client_id] = now
                text = json.dumps({"type": "send", "room": spec["room"], "body": body, "client_id": client_id})
            else:
                text = json.dumps({"message": body})
            try:
                await ws.send(text)
            except Exception:
                sent_at.pop(f"{s}-{g}-{n}-{step['tag']}", None)
                errors["send failed"] += 1
                return
            counts["sent", s] += 1
            n += 1

    async def step(step: dict) -> dict:
        s = step["index"]
        for index in sockets:
            seen[index] = {key for key in seen[index] if key[0] >= s}  # forget older steps
        mine = [i for i in sockets if specs[i]["sender"] is not None]
        # Deliveries this process expects if nothing is lost: each of its sockets gets every message
        # of the senders of its room (wherever they are).
        expected = sum(planned(step, g) for i in sockets for g in step["room_senders"][specs[i]["room"]])
        late_before = sum(v for (what, t), v in counts.items() if what == "unique" and t < s)
        await asyncio.gather(*(send(i, step) for i in mine))
        deadline = step["end"] + MAX_DRAIN
        while time.time() < deadline:
            all_acked = not any(specs[i]["kind"] == "product" for i in mine) or counts["acked", s] >= counts["sent", s]
            if all_acked and counts["unique", s] >= expected:
                break
            if all_acked and time.time() - state["last_any"] > QUIET:
                break
            await asyncio.sleep(0.05)
        return {
            "step": s,
            "sent": counts["sent", s],
            "acked": counts["acked", s],
            "expected_here": expected,
            "unique": counts["unique", s],
            "dup": counts["dup", s],
            "late_earlier_steps": sum(v for (what, t), v in counts.items() if what == "unique" and t < s) - late_before,
            "last": last_delivery.get(s, 0.0),
            "latencies": latencies.pop(s, array("d")).tobytes(),
            "echo": echoes.pop(s, array("d")).tobytes(),
            "ack_ms": ack_ms.pop(s, array("d")).tobytes(),
            "drained": time.time(),
        }

    while True:
        command = await loop.run_in_executor(None, commands.get)
        if command is None:
            break
        if command["op"] == "open":
            limit = asyncio.Semaphore(command["limit"]) if command.get("limit") else None
            del joined_sizes[:]
            start = time.time()
            outcomes = await asyncio.gather(*(open_one(i, limit) for i in command["indices"]))
            failures = [o for o in outcomes if isinstance(o, str)]
            results.put(
                {
                    "pid": os.getpid(),
                    "start": start,
                    "end": time.time(),
                    "opened": len(outcomes) - len(failures),
                    "failed": len(failures),
                    "errors": dict(Counter(failures).most_common(3)),
                    "connect_ms": array("d", [o * 1000 for o in outcomes if not isinstance(o, str)]).tobytes(),
                    "joined_max_bytes": max(joined_sizes, default=0),
                    "joined_bytes": sum(joined_sizes),
                    "joined_count": len(joined_sizes),
                    "closed": dict(closed),  # sockets of this process closed so far (since the start)
                }
            )
        elif command["op"] == "step":
            errors.clear()
            result = await step(command)
            results.put({**result, "errors": dict(errors), "closed": dict(closed)})
    for task in readers.values():
        task.cancel()
    await asyncio.gather(*readers.values(), return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
    results.put({"closed": True, "socket_closes": dict(closed)})


class Clients:
    """The client processes of one run: `with Clients(specs, processes=4) as clients:`.
    Specs are dealt round robin; `open` and `step` send a command to all and gather the answers."""

    def __init__(self, specs: list[dict], *, processes: int) -> None:
        self.specs = specs
        ctx = mp.get_context("spawn")
        self.shares = [list(range(p, len(specs), processes)) for p in range(processes)]
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(processes)]
        self.progress = [ctx.Array("q", 5, lock=False) for _ in range(processes)]
        self.processes = [
            ctx.Process(
                target=client_main,
                args=({i: specs[i] for i in share}, q, self.results, counter),
                daemon=True,
            )
            for share, q, counter in zip(self.shares, self.commands, self.progress, strict=True)
        ]

    def __enter__(self) -> Clients:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc_info) -> None:
        for q in self.commands:
            q.put(None)
        deadline = time.time() + 15
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.time()))
            if process.is_alive():
                process.kill()
                process.join()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def opened(self) -> int:
        return sum(p[0] for p in self.progress)

    def delivered(self) -> int:
        return sum(p[1] for p in self.progress)

    def received(self) -> tuple[int, int]:
        """Bytes and frames received by every socket so far, whatever the frames (joins included)."""
        return sum(p[2] for p in self.progress), sum(p[3] for p in self.progress)

    def received_not_messages(self) -> int:
        """Frames received so far other than `message` frames (the product's joined, presence, acks...)."""
        return sum(p[4] for p in self.progress)

    def gather(self, count: int, timeout: float, tick=None) -> list[dict]:
        answers, deadline = [], time.time() + timeout
        while len(answers) < count:
            if time.time() > deadline:
                raise TimeoutError(f"{count - len(answers)} client processes did not answer in {timeout} s")
            if not all(p.is_alive() for p in self.processes):
                raise RuntimeError("a client process died")
            try:
                answers.append(self.results.get(timeout=0.2))
            except queue.Empty:
                pass
            if tick is not None:
                tick()
        return answers

    def open(self, indices: list[int], *, limit: int = 0, tick=None, timeout: float = 300) -> dict:
        """Open those sockets (`limit` at a time in each process; 0: all at once)."""
        wanted = set(indices)
        for share, q in zip(self.shares, self.commands, strict=True):
            q.put({"op": "open", "indices": [i for i in share if i in wanted], "limit": limit})
        answers = self.gather(len(self.commands), timeout, tick)
        connect_ms = [x for a in answers for x in array("d", a["connect_ms"])]
        errors = sum((Counter(a["errors"]) for a in answers), Counter())
        seconds = max(a["end"] for a in answers) - min(a["start"] for a in answers)
        return {
            "sockets": len(indices),
            "opened": sum(a["opened"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "errors": dict(errors.most_common(3)),
            "seconds": round(seconds, 2),
            "per_s": round(sum(a["opened"] for a in answers) / max(seconds, 1e-9)),  # successful ones
            "connect_ms": connect_ms,
            "joined_max_bytes": max(a["joined_max_bytes"] for a in answers),
            "joined_bytes": sum(a["joined_bytes"] for a in answers),
            "joined_count": sum(a["joined_count"] for a in answers),
            "socket_closes": dict(sum((Counter(a["closed"]) for a in answers), Counter())),
        }

    def start_step(self, step: dict) -> None:
        """Start one send step in every process (it begins at step["start"]); `end_step` gathers."""
        for q in self.commands:
            q.put({"op": "step", **step})

    def end_step(self, step: dict, *, tick=None) -> list[dict]:
        """The answers of every process once each has drained."""
        return self.gather(len(self.commands), step["end"] - time.time() + MAX_DRAIN + 60, tick)
