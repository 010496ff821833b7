"""Faults injected into the real cluster, through the same code as `make faults` (tests/support/faults.py),
with smaller counts: a worker SIGKILLed, Redis and PostgreSQL restarted, a slow reader, a
reconnect storm, a graceful SIGTERM. Every scenario must end with every acked message held by
every member once (0 lost, 0 duplicated, nothing acked that is not stored), plus its own
recovery facts. One Redis and one PostgreSQL for the module; `kill` and `sigterm` get a fresh
cluster because they stop a worker.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import websockets

from tests.support import faults, postgres_server
from tests.support.daphne_server import DaphneServer

pytestmark = [
    pytest.mark.skipif(not postgres_server.available(), reason="PostgreSQL's server binaries are not installed"),
]

SMALL = {
    "redis": {"clients": 30, "rooms": 3, "talkers": 2, "rate": 1.0, "before": 2, "outage": 3, "after": 4},
    "postgres": {"clients": 30, "rooms": 3, "talkers": 2, "rate": 1.0, "before": 2, "outage": 3, "after": 4},
    "slow": {"members": 15, "talkers": 3, "rate": 2.0, "before": 3, "pause": 8, "body": 300},
    "storm": {"clients": 200, "rooms": 10, "talkers": 1, "rate": 1.0, "before": 2, "after": 3},
    "kill": {"clients": 40, "rooms": 4, "talkers": 2, "rate": 1.0, "before": 3, "after": 5},
    "sigterm": {"clients": 40, "rooms": 4, "talkers": 2, "rate": 1.0, "before": 3, "after": 5},
}
for _config in SMALL.values():  # no pause before the memory figure after the close: no test reads it
    _config["settle_after_close"] = 0


@pytest.fixture(scope="module")
def env():
    with faults.Environment(log=lambda line: print(line, flush=True)) as environment:
        yield environment


async def run(env, name: str) -> dict:
    result = await faults.run_scenario(env, name, SMALL[name], limit=80)
    print(f"\n{name}: " + "; ".join(faults.facts(name, result)))
    assert "error" not in result, result["error"]
    assert result["acked"] > 0
    assert (result["lost"], result["duplicated"], result["acked_not_stored"]) == (0, 0, 0), result
    assert result["seqs_gapless"] and result["catch_up_failures"] == 0
    assert result["sends"]["unanswered"] == 0
    return result


@pytest.mark.timeout(90)
async def test_redis_restart(env):
    result = await run(env, "redis")
    during = result["handshake_during_outage"]
    assert during["seconds"] < 5 and during["outcome"] == "closed 4503", during  # fails fast and says why
    assert result["sockets_dropped"] == 0  # the open sockets stayed open...
    assert result["live_deliveries_after_restart"] > 0  # ...and got live messages again
    assert result["handshake_after"]["outcome"] == "joined"


@pytest.mark.timeout(90)
async def test_postgres_restart(env):
    from chat.realtime.consumers import DATABASE_DOWN

    result = await run(env, "postgres")
    assert result["sends"]["failed_then_retried"] > 0  # sends during the outage got an error...
    assert result["sends"]["failure_details"] == [f"internal: {DATABASE_DOWN}"]
    assert result["sends"]["still_failed"] == 0  # ...and the user's Retry afterwards worked
    during = result["handshake_during_outage"]
    # A session in the shared cache opens without the database, and the join is refused with the
    # error the page retries after; an unknown one is closed with 4503. Never HTTP 500 or a wait.
    assert during["seconds"] < 5 and during["outcome"] in {"closed 4503", f"error internal: {DATABASE_DOWN}"}, during
    assert result["acked_after_restart"] > 0
    assert result["sockets_dropped"] == 0
    assert result["handshake_after"]["outcome"] == "joined"


@pytest.mark.timeout(90)
async def test_slow_reader(env):
    result = await run(env, "slow")
    assert result["slow_client"]["caught_up"] and result["slow_client"]["wrong_ids"] == 0
    assert result["memory_growth_during_mib"] < 50


@pytest.mark.exclusive  # a CPU-bound burst: not beside another module's tests (tests/conftest.py)
@pytest.mark.timeout(120)
async def test_reconnect_storm(env):
    result = await run(env, "storm")
    assert result["back"] == SMALL["storm"]["clients"] and result["all_back_s"] < 60
    assert result["recovered"] == result["clients_dropped"] == SMALL["storm"]["clients"]


@pytest.mark.timeout(90)
async def test_worker_sigkill(env):
    result = await run(env, "kill")
    assert result["clients_dropped"] > 0
    assert result["recovered"] == result["clients_dropped"]
    assert result["recovery_max_s"] < 20


@pytest.mark.timeout(90)
async def test_worker_sigterm_closes_with_1001(env):
    result = await run(env, "sigterm")
    assert result["clients_dropped"] > 0
    assert set(result["close_codes"]) == {"1001"}, result["close_codes"]  # not 1006
    assert result["recovered"] == result["clients_dropped"]
    assert result["worker_exit_s"] is not None and result["worker_exit_s"] < 10


@pytest.mark.timeout(60)
async def test_one_worker_sigterm_closes_its_sockets_with_1001_and_cleans_up():
    """server/worker.py (what bin/daphne-worker runs): SIGTERM closes every WebSocket with 1001
    (plain Daphne drops them: 1006), the consumers' disconnect runs, and the process exits 0."""
    with DaphneServer() as server:
        cookie = await asyncio.to_thread(server.login, "alice")
        sockets = []
        for _ in range(3):
            ws = await websockets.connect(
                server.ws_url, additional_headers={"Cookie": cookie, "Origin": server.base_url}, open_timeout=10
            )
            await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "joined"
            sockets.append(ws)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for ws in sockets:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1001
        assert await asyncio.to_thread(server.process.wait, 10) == 0
        assert time.monotonic() - started < 5
        log = server.log()
        assert log.count("WebSocket closed with code 1001") == 3  # the consumers' disconnect ran
        assert "closing 3 WebSocket(s) with 1001" in log
