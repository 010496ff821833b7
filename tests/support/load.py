"""`make bench`'s W1 (fan-out) on the product, the part tests/e2e/test_bench_smoke.py runs at a
modest load: the product as a target (bin/cluster, its Redis, PostgreSQL when installed, USERS
users with a session each), and stepped open-loop sending through the client processes of
tests/support/loadgen.py, measured per step (sent, acked, delivered, lost, duplicated, latency,
CPU). bench/bench.py adds the baselines, W2 and W3, and the report.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from array import array
from collections import Counter

from tests.support import postgres_server
from tests.support.cluster_server import ClusterServer
from tests.support.cpu import CpuMeter, parent_pid, pids_where
from tests.support.loadgen import Clients

USERS = 250
# W1 and W3: one sender goes far above the per-socket (10/s, burst 20) and per-user (20/s, burst
# 40) frame limits at the high steps, so these runs lift them. W2 keeps every default.
LIFTED = {name: "100000" for name in ("CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST")}
LIFTED |= {name: "100000" for name in ("CHAT_USER_RATE_PER_SECOND", "CHAT_USER_RATE_BURST")}
# W1 at a modest load: seconds, and it fails on a loss (bench --smoke, the e2e smoke test).
SMOKE = {
    "w1_steps_after_failure": 0,
    "w1_rooms": 4,
    "w1_room_size": 25,
    "w1_rates": [40],
    "w1_seconds": 3,
    "w1_processes": 2,
}


# Measuring -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


def stats(values: list[float]) -> dict:
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": round(max(values), 1) if values else None,
    }


def meter_for(target, clients: Clients) -> CpuMeter:
    return CpuMeter({**target.groups(), "clients": lambda: clients.pids})


def server_share(cpu: dict) -> int:
    return sum(v for k, v in cpu.items() if k not in ("clients", "machine"))


# The product ------------------------------------------------------------------------------------

SETUP = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from chat import services
User = get_user_model()
store = import_module(settings.SESSION_ENGINE).SessionStore
password = make_password(None)
keys = []
with transaction.atomic():
    for i in range(ROOMS):
        services.room_create(slug=f"bench{i}", name=f"Bench {i}")
    for i in range(USERS):
        user = User(username=f"bench{i:03d}", password=password)
        user.save()
        # What django.contrib.auth.login() stores in the session.
        session = store()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
print(json.dumps(keys))
"""


class ProductTarget:
    """bin/cluster with `workers` Daphne workers, its Redis, PostgreSQL; `rooms` rooms bench0..,
    `users` users (USERS by default) with a session each; socket i uses user i % users."""

    name = "product"

    def __init__(self, *, workers: int, rooms: int, env: dict[str, str] | None = None, users: int = USERS) -> None:
        self.workers, self.rooms, self.env, self.users = workers, rooms, env or {}, users

    def __enter__(self) -> ProductTarget:
        self.stack = contextlib.ExitStack()
        try:
            self.pg = (
                self.stack.enter_context(postgres_server.PostgresServer()) if postgres_server.available() else None
            )
            self.cluster = self.stack.enter_context(
                ClusterServer(workers=self.workers, database_url=self.pg.url if self.pg else None, env=self.env)
            )
            output = self.cluster.shell(SETUP.replace("ROOMS", str(self.rooms)).replace("USERS", str(self.users)))
            self.cookies = [f"sessionid={key}" for key in json.loads(output.splitlines()[-1])]
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stack.close()

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.pg else "SQLite"

    def spec(self, i: int, room: int, sender: int | None, worker: int) -> dict:
        w = worker % self.workers + 1
        headers = {"Cookie": self.cookies[i % len(self.cookies)], "Origin": self.cluster.base_url(w)}
        return {
            "kind": "product",
            "url": self.cluster.ws_url(w),
            "headers": headers,
            "room": f"bench{room}",
            "sender": sender,
        }

    def server_pids(self) -> list[int]:
        return [w["pid"] for w in self.cluster.state["workers"]]

    def groups(self) -> dict:
        port = self.cluster.state["redis_url"].rsplit(":", 1)[1].split("/")[0]
        groups = {
            "server": self.server_pids,
            "redis": lambda: pids_where(lambda pid, cmd: "redis-server" in cmd and f":{port}" in cmd),
        }
        if self.pg:
            postmaster = int((self.pg.tmpdir / "data" / "postmaster.pid").read_text().split()[0])
            groups["postgres"] = lambda: [postmaster, *pids_where(lambda pid, cmd: parent_pid(pid) == postmaster)]
        return groups


# W1 ---------------------------------------------------------------------------------------------


class NoBar:
    def __init__(self, *_, **__) -> None:
        self.n = 0

    def set_description_str(self, *_, **__) -> None:
        pass

    def set_postfix_str(self, *_, **__) -> None:
        pass

    def update(self, *_) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reset(self, *_, **__) -> None:
        pass


def run_steps(
    target, clients: Clients, specs: list[dict], config: dict, rates: list[int], seconds: float, bar, label: str
) -> list[dict]:
    """Stepped open-loop sending (each step drained before the next); per step, what it did."""
    rooms: dict[str, list[int]] = {}
    for spec in specs:
        rooms.setdefault(spec["room"], [])
        if spec["sender"] is not None:
            rooms[spec["room"]].append(spec["sender"])
    size = Counter(spec["room"] for spec in specs)
    senders = sum(len(v) for v in rooms.values())
    meter = meter_for(target, clients)
    out = []
    for index, rate in enumerate(rates):
        bar.set_description_str(f"{label} {target.name} {rate} msg/s")
        start = time.time() + 0.5
        step = {"index": index, "rate": rate, "start": start, "end": start + seconds, "senders": senders}
        # In the client_ids: the product stores a (user, room, client_id) once, and W3 and W1 share
        # users and rooms, so each step's ids are its own.
        step["tag"] = secrets.token_hex(4)
        step["room_senders"] = rooms
        clients.start_step(step)
        time.sleep(max(0.0, start - time.time()))
        before = meter.sample()
        while time.time() < step["end"]:
            time.sleep(0.2)
            bar.set_postfix_str(f"{clients.delivered()} deliveries", refresh=False)
            bar.update(0)
        cpu = CpuMeter.percent(before, meter.sample())
        answers = clients.end_step(
            step, tick=lambda: bar.set_postfix_str(f"{clients.delivered()} deliveries, draining")
        )
        bar.update(1)
        latencies = [x for a in answers for x in array("d", a["latencies"])]
        sent, acked = sum(a["sent"] for a in answers), sum(a["acked"] for a in answers)
        product = target.name == "product"
        # Every room has the same size here; expected = what the server took x members.
        expected = (acked if product else sent) * max(size.values())
        unique, dup = sum(a["unique"] for a in answers), sum(a["dup"] for a in answers)
        last = max(a["last"] for a in answers)
        window = max(last - start, seconds)
        errors = sum((Counter(a["errors"]) for a in answers), Counter())
        closes = sum((Counter(a["closed"]) for a in answers), Counter())
        row = {
            "offered_per_s": rate,
            "seconds": seconds,
            "sent": sent,
            "sent_per_s": round(sent / seconds, 1),
            "acked": acked if product else None,
            "unacked": sent - acked if product else 0,
            "expected": expected,
            "deliveries": unique,
            "deliveries_per_s": round(unique / window),
            "lost": expected - unique,
            "duplicates": dup,
            "late_from_earlier_steps": sum(a["late_earlier_steps"] for a in answers),
            "drain_seconds": round(max(a["drained"] for a in answers) - step["end"], 1),
            **stats(latencies),
            "echo": stats([x for a in answers for x in array("d", a["echo"])]),
            "ack": stats([x for a in answers for x in array("d", a["ack_ms"])]) if product else None,
            "errors": dict(errors),
            "socket_closes": dict(closes),
            "cpu_percent": cpu,
            "server_cpu_percent": server_share(cpu),
        }
        row["pass"] = bool(
            latencies and row["lost"] == 0 and dup == 0 and row["unacked"] == 0 and row["p99_ms"] < 200 and not closes
        )
        out.append(row)
        if label == "W1":
            tail = out[-(config["w1_steps_after_failure"] + 1) :]
            if not any(r["pass"] for r in tail) and len(tail) > config["w1_steps_after_failure"]:
                break  # that many failing steps in a row: one noisy step does not end the climb
    return out


def run_w1(target, config: dict, bar=None) -> dict:
    """W1 on an entered target with >= 2 workers (the bare server has one)."""
    bar = bar or NoBar()
    rooms, size = config["w1_rooms"], config["w1_room_size"]
    specs = []
    for i in range(rooms * size):
        room, j = divmod(i, size)
        # The two senders of a room are its first two sockets, one on each worker (i alternates).
        specs.append(target.spec(i, room, 2 * room + j if j < 2 else None, worker=i))
    bar.reset(total=len(config["w1_rates"]))
    with Clients(specs, processes=config["w1_processes"]) as clients:
        bar.set_postfix_str("")
        bar.set_description_str(f"W1 {target.name} connecting")
        opened = clients.open(
            list(range(len(specs))), limit=50, tick=lambda: bar.set_postfix_str(f"{clients.opened()} sockets")
        )
        if opened["failed"]:
            raise RuntimeError(f"W1 {target.name}: {opened['failed']} sockets failed to open: {opened['errors']}")
        steps = run_steps(target, clients, specs, config, config["w1_rates"], config["w1_seconds"], bar, "W1")
    passing = [s for s in steps if s["pass"]]
    return {
        "sockets": len(specs),
        "connect_seconds": opened["seconds"],
        "steps": steps,
        "figure_deliveries_per_s": max((s["deliveries_per_s"] for s in passing), default=0),
        "best_offered_per_s": max((s["offered_per_s"] for s in passing), default=None),
    }
