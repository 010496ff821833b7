"""/readyz on a real worker whose PostgreSQL or Redis goes away: 503, naming the one that failed,
and 200 again once it is back (the compose healthcheck and nginx rely on it)."""

import json
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


def test_readyz_names_the_database_when_postgresql_is_down(postgres):
    with RedisServer() as redis, DaphneServer(env={"DATABASE_URL": postgres.url, "REDIS_URL": redis.url}) as worker:
        assert readyz(worker) == (200, {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}})
        postgres._run("pg_ctl", "-D", str(postgres.tmpdir / "data"), "-m", "fast", "-w", "stop")
        status, body = readyz(worker)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["channel_layer"] == "ok"
        assert body["checks"]["database"].startswith("failed: "), body
        postgres._run(
            "pg_ctl",
            "-D",
            str(postgres.tmpdir / "data"),
            "-o",
            f"-p {postgres.port} -k {postgres.tmpdir} -c listen_addresses=127.0.0.1",
            "-l",
            str(postgres.tmpdir / "postgres.log"),
            "-w",
            "start",
        )
        assert readyz(worker)[0] == 200  # back by itself, no restart


def test_readyz_names_the_channel_layer_when_redis_is_down():
    with RedisServer() as redis, DaphneServer(env={"REDIS_URL": redis.url}) as worker:
        assert readyz(worker)[0] == 200
        redis.process.terminate()
        redis.process.wait(timeout=5)
        status, body = readyz(worker)
        assert status == 503
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["channel_layer"].startswith("failed: "), body
