"""Operations: Prometheus metrics at /metrics, structured (JSON) logs with request and
connection ids, and `manage.py chat_stats`."""

import asyncio
import gc
import io
import json
import logging
import re
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings
from django.utils import timezone

from chat import group_commit, services
from chat.models import Message
from chat.ops import metrics
from chat.ops.logs import ContextFilter, JsonFormatter
from chat.realtime.codes import CloseCode
from chat.realtime.presence import RedisPresence
from tests.support.daphne_server import free_port
from tests.support.metrics import parse, value
from tests.support.outages import take_down
from tests.support.redis_server import RedisServer
from tests.support.sockets import Socket, open_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "203.0.113.9"
TOKEN = "metrics-token-for-the-tests-0123456789"


# Helpers ---------------------------------------------------------------------------------------


async def scrape() -> dict:
    gc.collect()  # sockets of earlier tests whose tasks ended without a disconnect drop out now
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


class Capture(logging.Handler):
    """Formats records as the JSON console handler does (same filter, same formatter)."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_log():
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


# /metrics --------------------------------------------------------------------------------------


async def test_metrics_move_as_sockets_connect_send_err_and_close(alice, bob, make_room, connect):
    await database_sync_to_async(make_room)("lobby")
    before = await scrape()

    first, second = await connect(alice), await connect(bob)
    await first.join("lobby")
    await second.join("lobby")
    opened = await scrape()
    assert value(opened, "chat_websocket_connections") == value(before, "chat_websocket_connections") + 2
    assert value(opened, "chat_websocket_connections_opened_total") == (
        value(before, "chat_websocket_connections_opened_total") + 2
    )

    ack = await first.request("send", room="lobby", body="hello", client_id="c-1")
    assert ack["type"] == "ack"
    await first.expect("message")
    await second.expect("message")
    assert (await first.request("history", room="elsewhere"))["code"] == "not_joined"
    await first.send_text("{not json")
    await first.expect("error", code="bad_request")
    await first.communicator.send_to(bytes_data=b"\x00")
    await first.expect("error", code="bad_request")
    assert (await first.request("ping"))["type"] == "pong"
    after = await scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    received = {kind: moved("chat_frames_received_total", type=kind) for kind in metrics.RECEIVED_TYPES}
    assert received == {
        **dict.fromkeys(metrics.RECEIVED_TYPES, 0),
        **{"join": 2, "send": 1, "history": 1, "invalid": 1, "binary": 1, "ping": 1},
    }
    assert moved("chat_frames_sent_total", type="joined") == 2
    assert moved("chat_frames_sent_total", type="message") == 2  # one broadcast, two sockets
    assert moved("chat_frames_sent_total", type="ack") == 1
    assert moved("chat_frames_sent_total", type="pong") == 1
    assert moved("chat_frames_sent_total", type="error") == 3
    assert moved("chat_frames_sent_total", type="presence") >= 1  # alice hears bob come online
    assert moved("chat_errors_total", code="not_joined") == 1
    assert moved("chat_errors_total", code="bad_request") == 2
    assert moved("chat_errors_total", code="internal") == 0
    assert moved("chat_send_ack_seconds_count") == 1
    assert 0 < moved("chat_send_ack_seconds_sum") < 5
    assert moved("chat_send_ack_seconds_bucket", le="+Inf") == 1
    assert moved("chat_channel_layer_rtt_seconds_count") == 2  # one probe per scrape
    assert value(after, "chat_channel_layer_up") == 1

    await first.close()
    await second.close()
    anonymous, connected, _ = await open_socket(cookie=None)
    assert connected and await anonymous.closed_with() == 4401
    await anonymous.close()
    closed = await scrape()
    assert value(closed, "chat_websocket_connections") == value(before, "chat_websocket_connections")
    assert (
        value(closed, "chat_websocket_connections_closed_total", code="1000")
        - value(before, "chat_websocket_connections_closed_total", code="1000")
        == 2
    )
    # Counted with the server's close code, not the 1000 the test client answered with.
    assert (
        value(closed, "chat_websocket_connections_closed_total", code="4401")
        - value(before, "chat_websocket_connections_closed_total", code="4401")
        == 1
    )


async def test_metrics_include_the_process_metrics_and_every_family():
    samples = await scrape()
    names = {name for name, _ in samples}
    for family in (
        "chat_websocket_connections",
        "chat_websocket_connections_opened_total",
        "chat_websocket_connections_closed_total",
        "chat_frames_received_total",
        "chat_frames_sent_total",
        "chat_errors_total",
        "chat_send_ack_seconds_bucket",
        "chat_channel_layer_rtt_seconds_bucket",
        "chat_channel_layer_up",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info",
    ):
        assert family in names, family


def closed_total(samples: dict, code: int | str) -> float:
    return value(samples, "chat_websocket_connections_closed_total", code=str(code))


async def token_handshake(token: str) -> Socket:
    from config.asgi import application

    headers = [(b"authorization", f"Bearer {token}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return Socket(communicator)


async def test_metrics_count_every_close_code_under_its_own_label():
    samples = await scrape()
    for code in CloseCode:
        assert ("chat_websocket_connections_closed_total", (("code", str(int(code))),)) in samples, code


async def test_metrics_count_a_socket_over_the_per_user_cap_as_4408(alice, settings, connect):
    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    await connect(alice)
    before = await scrape()
    cookie = await database_sync_to_async(session_cookie)(alice)
    extra, connected, _ = await open_socket(cookie)
    assert connected and await extra.closed_with() == 4408
    await extra.close()
    after = await scrape()
    assert closed_total(after, 4408) - closed_total(before, 4408) == 1
    assert closed_total(after, "other") == closed_total(before, "other")
    assert value(after, "chat_websocket_connections") == value(before, "chat_websocket_connections")


@pytest.mark.parametrize("backend", ["redis", "database"])
async def test_metrics_count_a_handshake_while_a_backend_is_down_as_4503(alice, monkeypatch, backend):
    """Redis down: the consumer accepts, then cannot subscribe the user's group and closes. The
    database down: the session cannot be read, and chat.realtime.guard answers before any
    consumer runs. Both are counted under 4503, as opened and closed."""
    cookie = await database_sync_to_async(session_cookie)(alice)
    before = await scrape()
    take_down(monkeypatch, backend)
    socket, connected, _ = await open_socket(cookie)
    assert connected and await socket.closed_with() == 4503
    await socket.close()
    monkeypatch.undo()
    after = await scrape()
    assert closed_total(after, 4503) - closed_total(before, 4503) == 1
    assert closed_total(after, "other") == closed_total(before, "other")
    assert (
        value(after, "chat_websocket_connections_opened_total")
        - value(before, "chat_websocket_connections_opened_total")
        == 1
    )
    assert value(after, "chat_websocket_connections") == value(before, "chat_websocket_connections")


async def test_metrics_count_a_handshake_refused_for_wrong_tokens_as_4429(settings):
    settings.CHAT_TOKEN_FAILURES_PER_MINUTE = 1
    before = await scrape()
    first = await token_handshake("chat_wrong")
    assert await first.closed_with() == 4401  # the consumer's: within the address's limit
    await first.close()
    throttled = await token_handshake("chat_wrong")
    assert await throttled.closed_with() == 4429  # the middleware's, before any consumer
    await throttled.close()
    after = await scrape()
    assert closed_total(after, 4401) - closed_total(before, 4401) == 1
    assert closed_total(after, 4429) - closed_total(before, 4429) == 1
    assert (
        value(after, "chat_websocket_connections_opened_total")
        - value(before, "chat_websocket_connections_opened_total")
        == 2
    )
    assert value(after, "chat_websocket_connections") == value(before, "chat_websocket_connections")


def test_metrics_refuse_a_public_address():
    response = Client(REMOTE_ADDR=PUBLIC).get("/metrics")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")
    assert b"chat_" not in response.content
    # A token is no use while none is configured.
    response = Client(REMOTE_ADDR=PUBLIC).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403


@override_settings(CHAT_METRICS_TOKEN=TOKEN)
def test_metrics_accept_the_bearer_token_from_anywhere():
    client = Client(REMOTE_ADDR=PUBLIC)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert b"chat_websocket_connections " in response.content
    for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer", TOKEN):
        assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 403, wrong


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.254", True),
        ("192.168.1.20", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.7", True),
        (PUBLIC, False),
        ("172.32.0.1", False),
        ("8.8.8.8", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("unix-socket", False),
    ],
)
def test_metrics_private_networks(address, allowed):
    assert metrics.from_private_network(address) is allowed


# Logs ------------------------------------------------------------------------------------------


def test_request_id_is_reused_when_safe_and_made_otherwise():
    client = Client()
    assert client.get("/healthz", headers={"X-Request-ID": "edge-1234.abc_d"})["X-Request-ID"] == "edge-1234.abc_d"
    for unsafe in ("two words", "x" * 65, "<script>", "", "-leading-dash"):
        made = client.get("/healthz", headers={"X-Request-ID": unsafe})["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), (unsafe, made)
    first, second = client.get("/healthz")["X-Request-ID"], client.get("/healthz")["X-Request-ID"]
    assert first != second


async def test_log_lines_of_a_socket_carry_its_connection_id(alice, make_room, connect, json_log, monkeypatch):
    await database_sync_to_async(make_room)("lobby")

    def failing_send(**kwargs):  # runs in the database thread of database_sync_to_async
        logging.getLogger("chat.tests").warning("about to fail")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(group_commit, "messages_send", failing_send)  # the socket's sends (chat.realtime.batcher)
    socket = await connect(alice)
    await socket.join("lobby")
    reply = await socket.request("send", room="lobby", body="hello")
    assert (reply["type"], reply["code"]) == ("error", "internal")
    await socket.close()
    other = await connect(alice)
    await other.close()

    ours = [line for line in json_log if line["logger"] in {"chat.realtime.consumers", "chat.tests"}]
    messages = [line["message"] for line in ours]
    assert messages[:2] == [f"WebSocket opened by user {alice.pk}", "about to fail"], messages
    assert messages[2].startswith("Frame send from user")
    assert "RuntimeError: disk on fire" in ours[2]["exception"]
    assert messages[3] == "WebSocket closed with code 1000"
    ids = [line.get("connection_id") for line in ours]
    assert ids[0] and re.fullmatch(r"[0-9a-f]{32}", ids[0])
    assert ids[:4] == [ids[0]] * 4  # the async code and the database thread alike
    assert ids[4] and ids[4] != ids[0]  # the next socket has its own
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in json_log)
    assert ours[2]["level"] == "ERROR"


# chat_stats ------------------------------------------------------------------------------------


@pytest.fixture
def seeded(alice, bob, make_room):
    """4 rooms (1 archived, 1 private); 7 messages (1 deleted): 4 just now, 2 two hours ago,
    1 two days ago."""
    lobby, random_ = make_room("lobby"), make_room("random")
    staff = make_room("staff", private=True, created_by=alice)
    make_room("old", archived=True)
    for body in ("one", "two", "three"):
        services.message_send(room=lobby, author=alice, body=body)
    for body in ("now", "earlier", "earlier too"):
        services.message_send(room=random_, author=bob, body=body)
    services.message_send(room=staff, author=alice, body="long ago")
    now = timezone.now()
    Message.objects.filter(room=random_, seq__gte=2).update(created_at=now - timedelta(hours=2))
    Message.objects.filter(room=staff).update(created_at=now - timedelta(days=2))
    Message.objects.filter(room=lobby, seq=3).update(deleted=True)
    return {"lobby": lobby, "random": random_, "staff": staff}


def chat_stats(*args: str) -> str:
    out = io.StringIO()
    call_command("chat_stats", *args, stdout=out)
    return out.getvalue()


@override_settings(REDIS_URL="")
def test_chat_stats_without_redis(seeded):
    text = chat_stats()
    assert "Rooms: 4 (1 archived, 1 private)" in text
    assert "Messages: 7 stored (1 deleted); 4 in the last minute, 4 in the last hour, 6 in the last day" in text, text
    assert re.search(r"Busiest rooms in the last hour:\n  lobby \s*3\n  random\s*1\n", text), text
    assert "Online users: unknown: presence is per-process without REDIS_URL" in text

    data = json.loads(chat_stats("--json"))
    assert data["rooms"] == {"total": 4, "archived": 1, "private": 1}
    assert data["messages"] == {
        "total": 7,
        "deleted": 1,
        "last_minute": 4,
        "last_hour": 4,
        "last_day": 6,
    }
    assert data["busiest_last_hour"] == [{"room": "lobby", "messages": 3}, {"room": "random", "messages": 1}]
    assert data["online"]["source"] == "per-process"
    assert json.loads(chat_stats("--json", "--top", "1"))["busiest_last_hour"] == [{"room": "lobby", "messages": 3}]


def test_chat_stats_counts_online_users_from_redis_presence(seeded):
    lobby, random_ = seeded["lobby"], seeded["random"]
    with RedisServer() as redis:

        async def populate() -> None:
            live = RedisPresence(redis.url, ttl=15)
            lapsed = RedisPresence(redis.url, ttl=0.2)
            await live.add(room_id=lobby.pk, room_slug="lobby", username="alice", socket_id="c1")
            await live.add(room_id=lobby.pk, room_slug="lobby", username="bob", socket_id="c2")
            await live.add(room_id=lobby.pk, room_slug="lobby", username="bob", socket_id="c3")  # a second tab
            await live.add(room_id=random_.pk, room_slug="random", username="carol", socket_id="c4")
            await live.add(room_id=999999, room_slug="gone", username="dave", socket_id="c5")
            await lapsed.add(room_id=random_.pk, room_slug="random", username="erin", socket_id="c6")
            for presence in (live, lapsed):
                presence.task.cancel()
                await presence._client.aclose()

        asyncio.run(populate())
        time.sleep(0.4)  # erin's entry lapses (no heartbeat)
        with override_settings(REDIS_URL=redis.url):
            data = json.loads(chat_stats("--json"))
            text = chat_stats()

    assert data["online"] == {
        "source": "redis",
        "users": 4,
        "rooms": [
            {"room": "lobby", "count": 2, "users": ["alice", "bob"]},
            {"room": "#999999 (deleted)", "count": 1, "users": ["dave"]},
            {"room": "random", "count": 1, "users": ["carol"]},
        ],
    }
    assert "Online users (Redis presence): 4" in text
    assert re.search(r"\n  lobby\s+2  \(alice, bob\)\n", text), text
    assert re.search(r"\n  random\s+1  \(carol\)", text), text
    assert "erin" not in text


def test_chat_stats_reports_redis_that_does_not_answer(seeded):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        text = chat_stats()
        data = json.loads(chat_stats("--json"))
    assert "Online users: unknown: Redis did not answer: ConnectionError." in text
    assert "Rooms: 4" in text
    assert data["online"] == {"source": "redis", "error": "Redis did not answer: ConnectionError"}
