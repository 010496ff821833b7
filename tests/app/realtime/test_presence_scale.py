"""Presence in rooms above CHAT_PRESENCE_LIST_MAX (set to 3 here): changes instead of the whole
list, batched per worker, a capped `joined` list and the `online` pages (single process,
LocalPresence; tests/e2e/test_presence.py has the Redis backend)."""

import asyncio

import pytest
from channels.db import database_sync_to_async

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 0.3


@pytest.fixture(autouse=True)
def low_threshold(settings):
    settings.CHAT_PRESENCE_LIST_MAX = 3
    settings.CHAT_PRESENCE_BATCH_SECONDS = BATCH


@pytest.fixture
def hall(make_room):
    return make_room("hall")


@pytest.fixture
def people(make_user):
    return [make_user(name) for name in ("ann", "bea", "cal", "dan", "eve", "fay")]


async def presence_frames(socket, wait=BATCH * 2):
    return [frame for frame in await socket.drain(wait) if frame["type"] == "presence"]


async def test_small_room_gets_lists_then_changes_batched_then_a_list_again(people, hall, connect, settings):
    ann, bea, cal, dan, eve, fay = people
    a = await connect(ann)
    await a.join("hall")
    sockets = {}
    for user in (bea, cal):  # 2, then 3 online: at the threshold, whole lists at once
        sockets[user.username] = await connect(user)
        await sockets[user.username].join("hall")
    frames = await presence_frames(a, wait=0.1)
    assert [frame["users"] for frame in frames] == [["ann", "bea"], ["ann", "bea", "cal"]]

    # Three more join at once: 6 online, above the threshold. One frame for the batch, with the count.
    for user in (dan, eve, fay):
        sockets[user.username] = await connect(user)
    joins = await asyncio.gather(*(sockets[name].join("hall") for name in ("dan", "eve", "fay")))
    frames = await presence_frames(a)
    assert frames == [{"type": "presence", "room": "hall", "joined": ["dan", "eve", "fay"], "online": 6}]

    # A capped list in `joined`: the joiner first, then the first names in order; 3 names in all.
    fay_joined = joins[2]
    assert fay_joined["presence"] == ["fay", "ann", "bea"]
    assert fay_joined["presence_complete"] is False
    assert fay_joined["online"] == 6
    # The rest, page by page, after the last name listed.
    page = await sockets["fay"].request("online", room="hall", after="bea", limit=2)
    assert (page["users"], page["has_more"], page["online"]) == (["cal", "dan"], True, 6)
    page = await sockets["fay"].request("online", room="hall", after="dan", limit=2)
    assert (page["users"], page["has_more"]) == (["eve", "fay"], False)
    page = await sockets["fay"].request("online", room="hall")
    assert page["users"] == ["ann", "bea", "cal", "dan", "eve", "fay"] and page["has_more"] is False

    # One leaves, and a user who comes and goes within the batch is in neither list. Five steps
    # must fall in one batch: a longer one, so that a busy machine cannot split them.
    settings.CHAT_PRESENCE_BATCH_SECONDS = 1.5
    await sockets["eve"].close()
    extra = await connect(eve)
    await extra.join("hall")
    await sockets["bea"].request("leave", room="hall")
    await extra.close()
    frames = await presence_frames(a, wait=2.0)
    settings.CHAT_PRESENCE_BATCH_SECONDS = BATCH
    assert frames == [{"type": "presence", "room": "hall", "left": ["bea", "eve"], "online": 4}]

    # Back at the threshold: the whole list, at once, so every client's view is exact again.
    await sockets["dan"].close()
    frames = await presence_frames(a, wait=0.1)
    assert [{**frame, "version": 0} for frame in frames] == [
        {"type": "presence", "room": "hall", "users": ["ann", "cal", "fay"], "version": 0}
    ]


async def test_joined_is_complete_at_the_threshold_and_online_needs_a_join(people, hall, connect):
    ann, bea, cal, *_ = people
    sockets = [await connect(user) for user in (ann, bea, cal)]
    for socket in sockets[:2]:
        await socket.join("hall")
    joined = await sockets[2].join("hall")
    assert (joined["presence"], joined["presence_complete"], joined["online"]) == (["ann", "bea", "cal"], True, 3)
    outsider = await connect(await database_sync_to_async(lambda: people[3])())
    error = await outsider.request("online", room="hall")
    assert (error["type"], error["code"]) == ("error", "not_joined")
    error = await sockets[0].request("online", room="hall", limit=1001)
    assert (error["type"], error["code"]) == ("error", "bad_request")


async def test_http_online_pages_for_those_who_may_read_the_room(people, hall, make_room, connect):
    from django.test import Client

    from chat import services

    ann, bea, cal, dan, *_ = people
    for user in (ann, bea, cal, dan):
        await (await connect(user)).join("hall")
    token = (await database_sync_to_async(services.token_create)(user=ann, name="t"))[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(url, **headers):
        response = Client().get(url, **headers)
        return response.status_code, response.json()

    status, body = await database_sync_to_async(get)("/api/rooms/hall/online/?limit=3", **auth)
    assert (status, body) == (200, {"room": "hall", "users": ["ann", "bea", "cal"], "has_more": True, "online": 4})
    status, body = await database_sync_to_async(get)("/api/rooms/hall/online/?after=cal", **auth)
    assert (status, body["users"], body["has_more"]) == (200, ["dan"], False)
    # A name is taken as sent: a blank one starts from the first, and a tab sorts before every name.
    for after in ("", "%09"):
        status, body = await database_sync_to_async(get)(f"/api/rooms/hall/online/?after={after}", **auth)
        assert (status, body["users"]) == (200, ["ann", "bea", "cal", "dan"])
    status, body = await database_sync_to_async(get)("/api/rooms/hall/online/?limit=0", **auth)
    assert (status, body["code"]) == (400, "bad_request")
    assert (await database_sync_to_async(get)("/api/rooms/hall/online/"))[0] == 401
    await database_sync_to_async(make_room)("secret", private=True)
    status, body = await database_sync_to_async(get)("/api/rooms/secret/online/", **auth)
    assert (status, body["code"]) == (403, "forbidden")
    status, body = await database_sync_to_async(get)("/api/rooms/nowhere/online/", **auth)
    assert (status, body["code"]) == (404, "not_found")
