"""API tokens: made by `create_token` or the admin, stored as a hash, accepted on the WebSocket
(header or ?token=, no Origin needed), refused with 4401 when unknown, revoked or expired, and
revocation closes the sockets they opened."""

import io
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from chat import events, services
from chat.models import ApiToken
from tests.support.sockets import Socket

pytestmark = pytest.mark.django_db(transaction=True)


def create_token(*args) -> tuple[str, str]:
    out = io.StringIO()
    call_command("create_token", *args, stdout=out)
    text = out.getvalue()
    return text, text.strip().splitlines()[-1]


async def token_socket(token: str | None, *, how: str = "header", origin: str | None = None):
    from config.asgi import application

    headers, path = [], "/ws/chat/"
    if token is not None and how == "header":
        headers.append((b"authorization", f"Bearer {token}".encode()))
    elif token is not None:
        path += f"?token={token}"
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return Socket(communicator)


def test_create_token_prints_the_secret_last_and_stores_only_its_hash(alice):
    output, raw = create_token("alice", "--name", "deploy bot")
    assert raw.startswith("chat_") and len(raw) > 40
    assert "deploy bot" in output and "not shown again" in output
    token = ApiToken.objects.get()
    assert token.user == alice and token.name == "deploy bot" and token.expires_at is None
    assert raw not in {token.key_hash, token.prefix} and token.prefix == raw[:12]
    _, second = create_token("alice")
    assert second != raw and ApiToken.objects.count() == 2  # each run makes a new one


def test_create_token_refuses_with_a_sentence(alice):
    with pytest.raises(CommandError, match="There is no user 'nobody'."):
        create_token("nobody")
    with pytest.raises(CommandError, match="--expires-days must be at least 1."):
        create_token("alice", "--expires-days", "0")


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_token_socket_chats_without_origin_or_cookie(alice, how, make_room):
    await database_sync_to_async(make_room)("lobby")
    _, raw = await database_sync_to_async(create_token)("alice")
    socket = await token_socket(raw, how=how, origin="http://elsewhere.example" if how == "query" else None)
    try:
        joined = await socket.join("lobby")
        assert joined["room"] == "lobby" and "alice" in joined["presence"]
        ack = await socket.request("send", room="lobby", body="from a bot", client_id="b-1")
        assert ack["type"] == "ack" and ack["seq"] == 1
    finally:
        await socket.close()
    token = await database_sync_to_async(ApiToken.objects.get)()
    assert token.last_used_at is not None


async def test_unknown_revoked_and_expired_tokens_are_closed_4401_a_deactivated_users_4403(alice, bob):
    _, good = await database_sync_to_async(create_token)("alice")
    _, revoked = await database_sync_to_async(create_token)("alice")
    _, expired = await database_sync_to_async(create_token)("alice")
    _, inactive = await database_sync_to_async(create_token)("bob")

    def spoil():
        services.token_revoke(token=ApiToken.objects.get(prefix=revoked[:12]))
        ApiToken.objects.filter(prefix=expired[:12]).update(expires_at=timezone.now() - timedelta(seconds=1))
        bob.is_active = False
        bob.save()

    await database_sync_to_async(spoil)()
    for raw in ("chat_not-a-token", "", revoked, expired, good[:-1]):
        socket = await token_socket(raw)
        assert await socket.closed_with() == 4401, raw
    # The contract: a deactivated user gets 4403, whether a session or a token opened the socket.
    socket = await token_socket(inactive)
    assert await socket.closed_with() == 4403
    ok = await token_socket(good)
    await ok.nothing("error", wait=0.2)
    await ok.close()


async def test_revoking_a_token_closes_its_sockets_only(alice, make_room):
    await database_sync_to_async(make_room)("lobby")
    _, doomed = await database_sync_to_async(create_token)("alice")
    _, kept = await database_sync_to_async(create_token)("alice")
    a, b = await token_socket(doomed), await token_socket(kept)
    await a.join("lobby")
    await b.join("lobby")
    await database_sync_to_async(services.token_revoke)(
        token=await database_sync_to_async(ApiToken.objects.get)(prefix=doomed[:12])
    )
    assert await a.closed_with(timeout=3) == 4401
    assert (await b.request("ping"))["type"] == "pong"
    await b.close()


@override_settings(CHAT_TOKEN_SWEEP_SECONDS=1)
async def test_a_revocation_event_the_layer_drops_is_caught_by_the_sweep(alice, monkeypatch):
    _, raw = await database_sync_to_async(create_token)("alice")
    socket = await token_socket(raw)
    await socket.request("ping")
    monkeypatch.setattr(events, "token_revoked_on_commit", lambda **kwargs: None)  # the event is lost
    token = await database_sync_to_async(ApiToken.objects.get)()
    await database_sync_to_async(services.token_revoke)(token=token)
    assert await socket.closed_with(timeout=4) == 4401


def test_admin_makes_a_token_shows_it_once_and_revokes(alice, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/chat/apitoken/add/",
        {"user": alice.pk, "name": "ci bot", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    shown = re.search(r"The new token for alice is (chat_[\w-]+)", response.content.decode())
    assert shown, response.content.decode()[:3000]
    token = ApiToken.objects.get()
    assert token.name == "ci bot" and services.token_authenticate(shown.group(1)) == (alice, token.pk)
    assert shown.group(1) not in client.get(f"/admin/chat/apitoken/{token.pk}/change/").content.decode()
    client.post("/admin/chat/apitoken/", {"action": "revoke_tokens", "_selected_action": str(token.pk), "index": "0"})
    token.refresh_from_db()
    assert token.revoked_at is not None and services.token_authenticate(shown.group(1)) is None
