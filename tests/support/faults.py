"""Fault scenarios against the local production topology: what `make faults` (bench/faults.py)
runs in full and tests/e2e/test_faults.py runs with smaller counts.

Real processes, all on 127.0.0.1: bin/cluster (nginx -> 3 Daphne workers) on a throwaway Redis
(tests/support/redis_server.py) and a throwaway PostgreSQL (tests/support/postgres_server.py), both owned here so
they can be restarted. The clients are clients.connection's ChatClient, which behaves as the browser
page: it reconnects with jittered backoff, rejoins with `since`, keeps messages by seq, resends
unacknowledged messages with the same client_id, and shows a send answered with an `error` as
failed. They connect through nginx.

Scenarios (each on its own rooms; `kill` and `sigterm` on a fresh cluster, as they stop a worker):

  kill      a worker is SIGKILLed during a busy conversation
  redis     Redis stops and starts again on the same port (empty) mid-conversation
  postgres  PostgreSQL stops and starts again mid-conversation
  slow      one client stops reading for 30 s in a busy room
  storm     1000 sockets are dropped at once (client side) and reconnect with jitter
  sigterm   a worker gets SIGTERM mid-conversation (graceful shutdown)

For each: acked = sends answered with `ack`; delivered = acked messages that every member of the
room holds at the end, after a final catch-up (ping, `pong.seqs`, rejoin with `since`); lost =
acked - delivered; duplicated = a message a user would see twice (one client_id stored twice, or
one id at two seqs, in a client's view or in the database); acked-not-stored = an ack whose
message is not in the database. Sockets dropped = closes the clients saw; recovered = those whose
client was connected and joined again at the end; recovery = from the drop to every room joined
again. Memory = the sum of the live workers' RSS.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import websockets

from chat.realtime.codes import CloseCode
from clients.connection import ChatClient, Message
from tests.support.cluster_server import ClusterServer
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer

USERS = ["alice", "bob", "carol", "admin"]
# Hundreds of clients share these four demo accounts, so the per-user limits (sockets per user,
# the per-user frame bucket) are lifted for the run: they guard against one abusive account and
# are tested on their own in tests/app/test_hostile.py. The per-socket limits stay as they are.
SHARED_ACCOUNTS = dict.fromkeys(
    ("CHAT_MAX_SOCKETS_PER_USER", "CHAT_USER_RATE_PER_SECOND", "CHAT_USER_RATE_BURST"), "5000"
)
SCENARIOS = ["kill", "redis", "postgres", "slow", "storm", "sigterm"]
FRESH_CLUSTER = {"kill", "sigterm"}  # they leave a worker stopped


class TimedClient(ChatClient):
    """A ChatClient that shows each live `message` frame to `on_live` (the conversation's
    latency figures). Environment.client() makes them without periodic pings or a pong
    deadline: the drops and reconnects counted are the faults' own, and the final catch-up
    pings by itself."""

    on_live: Callable[[ChatClient, Message], None] | None = None

    def on_live_message(self, room: str, message: Message) -> None:
        if self.on_live is not None:
            self.on_live(self, message)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# The environment: Redis, PostgreSQL, clusters --------------------------------------------------


class Environment:
    """A Redis and a PostgreSQL for the whole run; clusters on them, started on demand."""

    def __init__(self, workers: int = 3, log=print) -> None:
        self.workers = workers
        self.log = log
        self.redis: RedisServer | None = None
        self.pg: PostgresServer | None = None
        self.cluster: ClusterServer | None = None
        self.cookies: dict[str, str] = {}
        self._rooms = 0

    def __enter__(self) -> Environment:
        self.redis = RedisServer().__enter__()
        try:
            self.pg = PostgresServer().__enter__()
        except BaseException:
            self.redis.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_cluster()
        if self.pg is not None:
            if not self.pg.started:
                try:
                    self.pg.start()
                except Exception:
                    pass
            self.pg.__exit__()
        if self.redis is not None:
            self.redis.__exit__()

    def fresh_cluster(self) -> ClusterServer:
        self.stop_cluster()
        started = time.monotonic()
        self.cluster = ClusterServer(
            workers=self.workers, database_url=self.pg.url, redis_url=self.redis.url, env=SHARED_ACCOUNTS
        ).__enter__()
        self.cookies = {name: self.cluster.login(name) for name in USERS}
        self.log(
            f"  cluster up in {time.monotonic() - started:.1f} s: nginx {self.cluster.url}, {self.workers} workers"
        )
        return self.cluster

    def ensure_cluster(self) -> ClusterServer:
        if self.cluster is None or not all(alive(w["pid"]) for w in self.cluster.state["workers"]):
            return self.fresh_cluster()
        return self.cluster

    def stop_cluster(self) -> None:
        if self.cluster is not None:
            try:
                self.cluster.__exit__()
            except Exception as error:  # a runner that would not stop: its processes were killed
                self.log(f"  stopping the cluster: {error!r}")
            self.cluster = None

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.cluster.state["workers"] if alive(w["pid"])]

    def memory(self) -> float:
        return rss_mib(self.worker_pids())

    def new_rooms(self, prefix: str, count: int) -> list[str]:
        self._rooms += 1
        stamp = f"{int(time.time()) % 100000}{self._rooms}"
        slugs = [f"{prefix}-{stamp}-{i}" for i in range(count)]
        self.cluster.shell(
            "from chat import services\n" + "".join(f"services.room_create(slug={s!r}, name={s!r})\n" for s in slugs)
        )
        return slugs

    def stored(self, rooms: list[str]) -> list[dict]:
        out = self.cluster.shell(
            "import json\nfrom chat.models import Message\n"
            f"print(json.dumps(list(Message.objects.filter(room__slug__in={rooms!r})"
            ".values('room__slug', 'seq', 'id', 'client_id'))))"
        )
        return json.loads(out.splitlines()[-1])

    def client(self, index: int, name: str = "") -> TimedClient:
        user = USERS[index % len(USERS)]
        return TimedClient(
            self.cluster.ws_url(),
            cookie=self.cookies[user],
            origin=self.cluster.origin,
            name=name or f"{user}-{index}",
            ping_interval=None,
            pong_timeout=None,
        )


# A conversation: clients in rooms, some of them talking ------------------------------------------


class Conversation:
    def __init__(
        self, env: Environment, rooms: list[str], clients: int, talkers_per_room: int, rate: float, body: int = 0
    ):
        self.env = env
        self.rooms = rooms
        self.clients: list[ChatClient] = []
        self.members: dict[str, list[ChatClient]] = {room: [] for room in rooms}
        self.count = clients
        self.talkers_per_room = talkers_per_room
        self.rate = rate
        self.body = body
        self.stop_talking = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.sent: dict[str, tuple[ChatClient, str]] = {}  # client_id -> (sender, room)
        self.latencies: list[tuple[float, float]] = []  # (arrival time, seconds)
        self.start_failures = 0

    def _on_live(self, client: ChatClient, message: dict) -> None:
        body = message["body"]
        if " t=" in body:
            now = time.time()
            self.latencies.append((now, now - float(body.split(" t=", 1)[1].split(" ", 1)[0])))

    async def start(self, batch: int = 25) -> None:
        homes = {}
        for i in range(self.count):
            room = self.rooms[i % len(self.rooms)]
            client = self.env.client(i)
            client.on_live = self._on_live
            self.clients.append(client)
            self.members[room].append(client)
            homes[client] = room

        async def open_one(client: ChatClient, room: str) -> None:
            try:
                await client.start(room)
            except TimeoutError:  # not joined within 10 s: it keeps trying, as a page would
                self.start_failures += 1
                await client.wait_for(lambda: client.connected, 60, "a first join")

        for first in range(0, self.count, batch):
            group = self.clients[first : first + batch]
            await asyncio.gather(*(open_one(c, homes[c]) for c in group))

    def talk(self) -> None:
        for room in self.rooms:
            for client in self.members[room][: self.talkers_per_room]:
                self.tasks.append(asyncio.create_task(self._talker(client, room)))

    async def _talker(self, client: ChatClient, room: str) -> None:
        n = 0
        pad = "x" * self.body
        await asyncio.sleep(random.uniform(0, 1 / self.rate))
        while not self.stop_talking.is_set():
            client_id = await client.send(room, f"{client.name}#{n} t={time.time():.6f} {pad}".rstrip(), wait=False)
            self.sent[client_id] = (client, room)
            n += 1
            try:
                await asyncio.wait_for(self.stop_talking.wait(), random.uniform(0.5, 1.5) / self.rate)
            except TimeoutError:
                pass

    async def quiet(self, settle: float = 30) -> dict:
        """Stop talking; wait until every send is acked or failed (bounded), then retry the
        failed ones once (the user's Retry button) and wait again."""
        self.stop_talking.set()
        await asyncio.gather(*self.tasks)

        def open_sends() -> list[str]:
            return [cid for cid, (c, _) in self.sent.items() if cid not in c.acks and cid not in c.failed]

        await wait_until(lambda: not open_sends(), settle)
        failed = {cid: c.failed[cid] for cid, (c, _) in self.sent.items() if cid in c.failed}
        for cid in failed:
            await self.sent[cid][0].retry(cid)
        await wait_until(lambda: not open_sends(), settle)
        return {
            "sent": len(self.sent),
            "failed_then_retried": len(failed),
            "failure_details": sorted({f"{f['code']}: {f['detail']}" for f in failed.values()}),
            "still_failed": sum(1 for cid, (c, _) in self.sent.items() if cid in c.failed),
            "unanswered": len(open_sends()),
        }

    async def catch_up(self, timeout: float = 60) -> int:  # noqa: ASYNC109
        """Every client: ping, compare `pong.seqs`, rejoin with `since` until it holds everything."""

        async def one(client: ChatClient) -> bool:
            try:
                await client.catch_up(timeout)
                return True
            except TimeoutError:
                return False

        results = []
        for first in range(0, len(self.clients), 100):
            results += await asyncio.gather(*(one(c) for c in self.clients[first : first + 100]))
        return results.count(False)

    async def stop(self) -> None:
        for first in range(0, len(self.clients), 100):
            await asyncio.gather(*(c.stop() for c in self.clients[first : first + 100]))

    def verify(self, stored: list[dict]) -> dict:
        acked = {}
        for cid, (client, room) in self.sent.items():
            if cid in client.acks:
                ack = client.acks[cid]
                acked[(room, cid)] = (ack["id"], ack["seq"])
        delivered = 0
        for (room, _cid), (mid, seq) in acked.items():
            if all(seq in c.messages[room] and c.messages[room][seq]["id"] == mid for c in self.members[room]):
                delivered += 1
        seen_twice = set()
        for room, members in self.members.items():
            for c in members:
                by_cid: dict[tuple, set] = {}
                by_id: dict[int, set] = {}
                for seq, m in c.messages[room].items():
                    if m.get("client_id"):
                        by_cid.setdefault((m["author"], m["client_id"]), set()).add(seq)
                    by_id.setdefault(m["id"], set()).add(seq)
                seen_twice |= {(room, k) for k, v in by_cid.items() if len(v) > 1}
                seen_twice |= {(room, k) for k, v in by_id.items() if len(v) > 1}
        db_cids: dict[tuple, int] = {}
        for row in stored:
            if row["client_id"]:
                key = (row["room__slug"], row["client_id"])
                db_cids[key] = db_cids.get(key, 0) + 1
        db_twice = sum(1 for n in db_cids.values() if n > 1)
        stored_ids = {(r["room__slug"], r["id"], r["seq"]) for r in stored}
        not_stored = sum(1 for (room, _), (mid, seq) in acked.items() if (room, mid, seq) not in stored_ids)
        seqs_ok = all(
            sorted(r["seq"] for r in stored if r["room__slug"] == room)
            == list(range(1, 1 + sum(1 for r in stored if r["room__slug"] == room)))
            for room in self.rooms
        )
        return {
            "acked": len(acked),
            "delivered": delivered,
            "lost": len(acked) - delivered,
            "duplicated": len(seen_twice) + db_twice,
            "acked_not_stored": not_stored,
            "stored": len(stored),
            "seqs_gapless": seqs_ok,
        }

    def sockets(self, since: float | None = None) -> dict:
        dropped = [c for c in self.clients if c.closes]
        recoveries = [r for c in self.clients for r in c.recoveries]
        codes: dict[str, int] = {}
        for c in self.clients:
            for code in c.closes:
                codes[str(code)] = codes.get(str(code), 0) + 1
        return {
            "sockets_dropped": sum(len(c.closes) for c in self.clients),
            "clients_dropped": len(dropped),
            "recovered": sum(1 for c in dropped if c.connected),
            "close_codes": codes,
            "recovery_p50_s": round(statistics.median(recoveries), 2) if recoveries else None,
            "recovery_max_s": round(max(recoveries), 2) if recoveries else None,
        }

    def acked_count(self) -> int:
        return sum(1 for cid, (c, _) in self.sent.items() if cid in c.acks)

    def latency(self, start: float, end: float) -> dict:
        values = [lat for at, lat in self.latencies if start <= at < end]
        return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99))}


async def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def finish(env: Environment, conv: Conversation, result: dict, config: dict) -> dict:
    result["sends"] = await conv.quiet()
    result["catch_up_failures"] = await conv.catch_up()
    result.update(conv.verify(env.stored(conv.rooms)))
    result.update(conv.sockets())
    result["memory_after_mib"] = env.memory()
    await conv.stop()
    await asyncio.sleep(config.get("settle_after_close", 2))  # before memory_after_close_mib (a figure)
    result["memory_after_close_mib"] = env.memory()
    return result


# Scenarios ----------------------------------------------------------------------------------------


async def conversation(env: Environment, name: str, config: dict) -> tuple[Conversation, dict]:
    rooms = env.new_rooms(name, config["rooms"])
    result = {"memory_before_mib": env.memory()}
    conv = Conversation(env, rooms, config["clients"], config["talkers"], config["rate"])
    started = time.monotonic()
    await conv.start()
    result["connect_s"] = round(time.monotonic() - started, 2)
    env.log(f"  {config['clients']} clients joined in {result['connect_s']} s ({conv.start_failures} slow)")
    result["clients"] = config["clients"]
    result["rooms"] = config["rooms"]
    conv.talk()
    await asyncio.sleep(config["before"])
    return conv, result


async def scenario_kill(env: Environment, config: dict) -> dict:
    """A worker SIGKILLed during a busy conversation: its clients reconnect through nginx."""
    cluster = env.cluster
    conv, result = await conversation(env, "kill", config)
    held = sum(1 for c in conv.clients if c.connected)
    cluster.kill_worker(1)
    result["fault"] = "SIGKILL worker 1"
    await asyncio.sleep(config["after"])
    result["clients_connected_at_kill"] = held
    return await finish(env, conv, result, config)


async def handshake_probe(env: Environment, timeout: float = 15) -> dict:  # noqa: ASYNC109
    """Open a socket through nginx and join a room: what does a new page get, how fast?"""
    started = time.monotonic()
    outcome = "no answer"
    try:
        async with websockets.connect(
            env.cluster.ws_url(),
            additional_headers={"Cookie": env.cookies["alice"], "Origin": env.cluster.origin},
            open_timeout=timeout,
            close_timeout=2,
        ) as ws:
            await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "probe"}))
            while time.monotonic() - started < timeout:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout - (time.monotonic() - started)))
                except TimeoutError:
                    break
                if frame.get("ref") == "probe":
                    outcome = frame["type"] if frame["type"] != "error" else f"error {frame['code']}: {frame['detail']}"
                    break
    except websockets.exceptions.InvalidStatus as error:
        outcome = f"HTTP {error.response.status_code}"
    except websockets.exceptions.ConnectionClosed as error:
        outcome = f"closed {error.rcvd.code if error.rcvd else int(CloseCode.ABNORMAL)}"
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
        outcome = f"{type(error).__name__}"
    return {"outcome": outcome, "seconds": round(time.monotonic() - started, 2)}


async def outage(env: Environment, config: dict, stop: Callable[[], object], start: Callable[[], object]) -> dict:
    """Stop a backend for config["outage"] seconds, probing a new handshake meanwhile; start it
    again. Returns the probe's outcome."""
    stop()
    down = time.monotonic()
    await asyncio.sleep(0.5)
    probe = await handshake_probe(env, timeout=max(2, config["outage"] - 1))
    await asyncio.sleep(max(0, config["outage"] - (time.monotonic() - down)))
    start()
    return probe


async def scenario_redis(env: Environment, config: dict) -> dict:
    conv, result = await conversation(env, "redis", config)
    result["fault"] = f"Redis stopped for {config['outage']} s, then started again empty"
    result["handshake_during_outage"] = await outage(env, config, env.redis.stop, env.redis.start)
    up = time.time()
    await asyncio.sleep(config["after"])
    result["handshake_after"] = await handshake_probe(env)
    result["live_deliveries_after_restart"] = conv.latency(up, time.time())["n"]
    return await finish(env, conv, result, config)


async def scenario_postgres(env: Environment, config: dict) -> dict:
    conv, result = await conversation(env, "postgres", config)
    result["fault"] = f"PostgreSQL stopped (fast) for {config['outage']} s, then started again"
    result["handshake_during_outage"] = await outage(env, config, lambda: env.pg.stop("fast"), env.pg.start)
    acked_at_restart = conv.acked_count()
    await asyncio.sleep(config["after"])
    errors = [f for c in conv.clients for f in c.frames if f["type"] == "error"]
    result["errors_seen"] = len(errors)
    result["error_kinds"] = sorted({f"{f['code']}: {f['detail']}" for f in errors})
    result["handshake_after"] = await handshake_probe(env)
    result["acked_after_restart"] = conv.acked_count() - acked_at_restart
    return await finish(env, conv, result, config)


async def scenario_sigterm(env: Environment, config: dict) -> dict:
    cluster = env.cluster
    conv, result = await conversation(env, "sigterm", config)
    pid = cluster.worker_pid(1)
    cluster.kill_worker(1, signal.SIGTERM)
    termed = time.monotonic()
    result["fault"] = "SIGTERM worker 1"
    exited = await wait_until(lambda: not alive(pid), 15, 0.05)
    result["worker_exit_s"] = round(time.monotonic() - termed, 2) if exited else None
    await asyncio.sleep(config["after"])
    return await finish(env, conv, result, config)


async def scenario_storm(env: Environment, config: dict) -> dict:
    conv, result = await conversation(env, "storm", config)
    opened = [c for c in conv.clients if c.ws is not None]
    dropped_at = time.monotonic()
    for client in opened:  # every socket at once, abruptly: no close frame (as a network cut)
        client.abort()
    result["fault"] = f"{len(opened)} sockets cut at once (client side, no close frame)"
    await asyncio.sleep(0.2)

    def count_back() -> int:
        return sum(1 for c in conv.clients if c.connected and c.opened_at[-1] > dropped_at)

    back = False
    for _ in range(120):  # at most 120 s, with a progress line every 5 s
        if await wait_until(lambda: count_back() == len(conv.clients), 5, 0.1):
            back = True
            break
        env.log(f"  {count_back()} of {len(conv.clients)} back after {time.monotonic() - dropped_at:.0f} s")
        if time.monotonic() - dropped_at > 120:
            break
    result["all_back_s"] = round(time.monotonic() - dropped_at, 2) if back else None
    result["back"] = sum(1 for c in conv.clients if c.connected and c.opened_at[-1] > dropped_at)
    result["memory_peak_mib"] = env.memory()
    await asyncio.sleep(config["after"])
    return await finish(env, conv, result, config)


class SlowReader:
    """A raw websockets client that stops reading: a tiny kernel receive buffer and a websockets
    queue of 1 frame, so the server's writes back up as soon as it pauses."""

    def __init__(self, env: Environment, room: str) -> None:
        self.env, self.room = env, room
        self.seqs: dict[int, int] = {}  # seq -> id
        self.closes: list[int] = []
        self.ws = None

    async def connect(self) -> None:
        host, port = self.env.cluster.url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        self.ws = await websockets.connect(
            self.env.cluster.ws_url(),
            sock=sock,
            additional_headers={"Cookie": self.env.cookies["bob"], "Origin": self.env.cluster.origin},
            max_queue=1,
            ping_interval=None,  # a reader that stops reading answers no pings either
            open_timeout=10,
        )
        await self.ws.send(json.dumps({"type": "join", "room": self.room, "since": self.newest(), "ref": "join"}))

    def newest(self) -> int:
        n = 0
        while n + 1 in self.seqs:
            n += 1
        return n

    async def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            except TimeoutError:
                return
            except websockets.exceptions.ConnectionClosed as error:
                self.closes.append(error.rcvd.code if error.rcvd else int(CloseCode.ABNORMAL))
                return
            if frame["type"] == "message":
                self.seqs[frame["message"]["seq"]] = frame["message"]["id"]
            elif frame["type"] == "joined":
                for m in frame["messages"]:
                    self.seqs[m["seq"]] = m["id"]

    async def catch_up(self, last_seq: int, timeout: float = 30) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while self.newest() < last_seq and time.monotonic() < deadline:
            if self.ws is None or self.ws.state is not websockets.protocol.State.OPEN:
                await self.connect()
            else:
                await self.ws.send(json.dumps({"type": "join", "room": self.room, "since": self.newest(), "ref": "j"}))
            await self.read_for(min(3, max(0.1, deadline - time.monotonic())))
        return self.newest() >= last_seq

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def scenario_slow(env: Environment, config: dict) -> dict:
    room = env.new_rooms("slow", 1)[0]
    result = {"memory_before_mib": env.memory(), "clients": config["members"] + 1, "rooms": 1}
    conv = Conversation(env, [room], config["members"], config["talkers"], config["rate"], body=config["body"])
    await conv.start()
    slow = SlowReader(env, room)
    await slow.connect()
    await slow.read_for(1)
    conv.talk()
    t0 = time.time()
    await asyncio.sleep(config["before"])
    t1 = time.time()
    result["fault"] = f"one client stops reading for {config['pause']} s (SO_RCVBUF 4 KiB, websockets max_queue 1)"
    memory = [env.memory()]
    paused_at = time.monotonic()
    while time.monotonic() - paused_at < config["pause"]:  # not reading; sample the workers' memory
        await asyncio.sleep(1)
        memory.append(env.memory())
    t2 = time.time()
    await slow.read_for(3)  # reads again
    result["latency_before"] = conv.latency(t0 + 1, t1)
    result["latency_during"] = conv.latency(t1, t2)
    result["memory_during_max_mib"] = max(memory)
    result["memory_growth_during_mib"] = round(max(memory) - memory[0], 1)
    sends = await conv.quiet()
    result["sends"] = sends
    stored = env.stored([room])
    last = max((r["seq"] for r in stored), default=0)
    held_live = slow.newest()
    caught = await slow.catch_up(last)
    result["slow_client"] = {
        "held_after_resume": held_live,
        "room_last_seq": last,
        "caught_up": caught,
        "closes": slow.closes,
        "reconnected": bool(slow.closes),
        "wrong_ids": sum(1 for r in stored if slow.seqs.get(r["seq"], r["id"]) != r["id"]),
    }
    await slow.close()
    result["catch_up_failures"] = await conv.catch_up()
    result.update(conv.verify(stored))
    if not caught:
        result["lost"] += 1
    result.update(conv.sockets())
    result["memory_after_mib"] = env.memory()
    await conv.stop()
    await asyncio.sleep(config.get("settle_after_close", 2))  # before memory_after_close_mib (a figure)
    result["memory_after_close_mib"] = env.memory()
    return result


RUNNERS = {
    "kill": scenario_kill,
    "redis": scenario_redis,
    "postgres": scenario_postgres,
    "slow": scenario_slow,
    "storm": scenario_storm,
    "sigterm": scenario_sigterm,
}


async def run_scenario(env: Environment, name: str, config: dict, limit: float = 240) -> dict:
    if name in FRESH_CLUSTER:
        env.fresh_cluster()
    else:
        env.ensure_cluster()
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(RUNNERS[name](env, config), limit)
    except Exception as error:  # a scenario that failed to run is reported, not hidden
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"[:500]}
    result["seconds"] = round(time.monotonic() - started, 1)
    result["config"] = config
    return result


def facts(name: str, r: dict) -> list[str]:
    if "error" in r:
        return [r["error"]]
    out = [r.get("fault", "")]
    s = r.get("sends", {})
    out.append(
        f"sends {s.get('sent')}, answered with an error {s.get('failed_then_retried')} (retried once: "
        f"{s.get('still_failed')} still failed), unanswered {s.get('unanswered')}; acked but not stored "
        f"{r.get('acked_not_stored')}; seqs gapless {r.get('seqs_gapless')}; close codes {r.get('close_codes')}"
    )
    if s.get("failure_details"):
        out.append(f"send errors: {s['failure_details']}")
    for key in (
        "handshake_during_outage",
        "handshake_after",
        "error_kinds",
        "all_back_s",
        "back",
        "memory_peak_mib",
        "worker_exit_s",
        "latency_before",
        "latency_during",
        "memory_growth_during_mib",
        "slow_client",
        "memory_after_close_mib",
        "clients_connected_at_kill",
        "live_deliveries_after_restart",
        "acked_after_restart",
        "catch_up_failures",
    ):
        if key in r:
            out.append(f"{key}: {r[key]}")
    return out
