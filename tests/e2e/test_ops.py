"""Operations on a real worker: JSON logs with request and connection ids, /metrics after real
sockets, and start-up refusals of bad logging and metrics settings."""

import asyncio
import json
import re
import time

import websockets

from tests.support.daphne_server import DaphneServer
from tests.support.metrics import parse, value
from tests.support.processes import assert_refused, manage


def test_json_logs_of_a_real_worker_carry_request_and_connection_ids():
    with DaphneServer(env={"DJANGO_LOG_FORMAT": "json"}) as server:
        missing = server.session().request("GET", "/no-such-page/", headers={"X-Request-ID": "ops-test-42"})
        assert missing.status == 404
        assert missing.headers["X-Request-ID"] == "ops-test-42"
        made = server.session().request("GET", "/healthz", headers={"X-Request-ID": "not safe!"})
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
        cookie = server.login("alice")

        async def chat() -> None:
            async with websockets.connect(
                server.ws_url, additional_headers={"Cookie": cookie, "Origin": server.base_url}, proxy=None
            ) as ws:
                await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "joined"
                await ws.send("{not json")
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "bad_request"

        asyncio.run(chat())
        deadline = time.monotonic() + 10
        while "WebSocket closed" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        samples = parse(server.session().get("/metrics").text)
        log = server.log()

    lines, other = [], []
    for raw in log.splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))  # every log record is one JSON object
        elif raw.strip():
            other.append(raw)
    # Daphne writes its access log straight to stdout, past `logging`; chat.access covers it.
    assert all(re.match(r'^\S+ - - \[[^]]+\] "', raw) for raw in other), other
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    not_found = [line for line in lines if line["logger"] == "django.request"]
    assert not_found and not_found[0]["message"] == "Not Found: /no-such-page/", lines
    assert not_found[0]["request_id"] == "ops-test-42"
    assert not_found[0]["status_code"] == 404
    access = [line for line in lines if line["logger"] == "chat.access" and line["path"] == "/no-such-page/"]
    assert access and access[0]["request_id"] == "ops-test-42" and access[0]["status"] == 404

    socket_lines = [line for line in lines if line["logger"] == "chat.realtime.consumers"]
    assert [line["message"][:24] for line in socket_lines] == ["WebSocket opened by user", "WebSocket closed with co"]
    assert socket_lines[0]["connection_id"] == socket_lines[1]["connection_id"]
    assert "request_id" not in socket_lines[0]

    assert value(samples, "chat_websocket_connections_opened_total") == 1
    assert value(samples, "chat_websocket_connections_closed_total", code="1000") == 1
    assert value(samples, "chat_frames_received_total", type="invalid") == 1
    assert value(samples, "chat_errors_total", code="bad_request") == 1
    assert value(samples, "chat_channel_layer_up") == 1


def test_a_bad_log_format_stops_start_up():
    assert_refused(manage("check", env={"DJANGO_LOG_FORMAT": "xml"}), "DJANGO_LOG_FORMAT must be one of", "'xml'")
    assert manage("check", env={"DJANGO_LOG_FORMAT": "JSON"}).returncode == 0


def test_a_short_metrics_token_stops_start_up():
    assert_refused(manage("check", env={"CHAT_METRICS_TOKEN": "short"}), "CHAT_METRICS_TOKEN")
