"""/readyz on a real worker whose PostgreSQL or Redis goes away: 503, naming the one that failed,
and 200 again once it is back (the compose healthcheck and nginx rely on it)."""

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.daphne_server import DaphneServer
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer


def readyz(server: DaphneServer) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(server.base_url + "/readyz", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def postgres():
    with PostgresServer() as pg:
        yield pg


def ready_within(server: DaphneServer, seconds: float) -> float:
    """Seconds until /readyz answers 200, polling; fails after `seconds`."""
    started = time.monotonic()
    while True:
        if readyz(server)[0] == 200:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "/readyz did not come back"
        time.sleep(0.1)


def test_readyz_names_the_database_when_postgresql_is_down(postgres):
    data = str(postgres.tmpdir / "data")
    start = ("-o", f"-p {postgres.port} -k {postgres.tmpdir} -c listen_addresses=127.0.0.1")
    with RedisServer() as redis, DaphneServer(env={"DATABASE_URL": postgres.url, "REDIS_URL": redis.url}) as worker:
        assert readyz(worker) == (200, {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}})
        postgres._run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        status, body = readyz(worker)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["channel_layer"] == "ok"
        assert body["checks"]["database"].startswith("failed: "), body
        # Down for 7 s, asked now and then: the connection pool's retries, which back off, must
        # not leave the worker unready for long once PostgreSQL is back. It answers 503 at once
        # for a moment after a failed wait (chat.dbbackend), then 200 again by itself.
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            assert readyz(worker)[0] == 503
            time.sleep(1)
        postgres._run("pg_ctl", "-D", data, *start, "-l", str(postgres.tmpdir / "postgres.log"), "-w", "start")
        assert ready_within(worker, 3) < 3  # back by itself, no restart


def test_readyz_names_the_channel_layer_when_redis_is_down():
    with RedisServer() as redis, DaphneServer(env={"REDIS_URL": redis.url}) as worker:
        assert readyz(worker)[0] == 200
        redis.process.terminate()
        redis.process.wait(timeout=5)
        status, body = readyz(worker)
        assert status == 503
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["channel_layer"].startswith("failed: "), body
