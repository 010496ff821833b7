"""Redis presence (chat.realtime.presence.RedisPresence) against a real redis-server.

Each RedisPresence instance stands for one worker process. The cluster tests (test_cluster.py)
check the same behaviour end to end with real Daphne workers.
"""

import asyncio
import json

import pytest
from channels.layers import get_channel_layer

from chat import events
from chat.realtime.presence import RedisPresence
from tests.support.redis_server import RedisServer

TTL = 3  # seconds; the shortest the setting allows, to keep these tests quick


@pytest.fixture(scope="module")
def redis_url():
    with RedisServer() as redis:
        yield redis.url


@pytest.fixture
async def workers(redis_url):
    """Three "workers" sharing one Redis; each test uses its own room ids."""
    made = [RedisPresence(redis_url, ttl=TTL) for _ in range(3)]
    await made[0]._redis().flushdb()
    yield made
    for worker in made:
        if worker.task is not None:
            worker.task.cancel()
        if worker._client is not None:
            await worker._client.aclose()


async def test_one_entry_per_user_across_workers(workers):
    a, b, c = workers
    assert await a.add(room_id=1, room_slug="r", username="alice", socket_id="ch-a1") is True
    assert await b.add(room_id=1, room_slug="r", username="alice", socket_id="ch-b1") is False
    assert await b.add(room_id=1, room_slug="r", username="bob", socket_id="ch-b2") is True
    for worker in workers:
        assert await worker.users(room_id=1) == ["alice", "bob"]
    assert await a.remove(room_id=1, username="alice", socket_id="ch-a1") is False  # the other tab stays
    assert await c.users(room_id=1) == ["alice", "bob"]
    assert await b.remove(room_id=1, username="alice", socket_id="ch-b1") is True
    assert await c.users(room_id=1) == ["bob"]
    assert await b.remove(room_id=1, username="alice", socket_id="ch-b1") is False  # twice: no second event


async def test_heartbeat_keeps_live_sockets_listed(workers):
    a, b, _ = workers
    await a.add(room_id=2, room_slug="r", username="alice", socket_id="ch-a")
    await asyncio.sleep(TTL * 1.7)  # past the TTL: only the heartbeats keep the entry
    assert await b.users(room_id=2) == ["alice"]


async def test_a_dead_worker_leaves_no_ghost(workers):
    """Worker A dies without a disconnect (its heartbeat stops); worker B, which has a socket in
    the same room, removes A's users after the TTL and tells the room."""
    a, b, _ = workers
    layer = get_channel_layer()
    watcher = await layer.new_channel()
    await layer.group_add(events.room_group(3), watcher)

    await a.add(room_id=3, room_slug="r3", username="ghost", socket_id="ch-a")
    await b.add(room_id=3, room_slug="r3", username="bob", socket_id="ch-b")
    a.task.cancel()  # SIGKILL: no more heartbeats, no remove()
    assert await b.users(room_id=3) == ["bob", "ghost"]

    started = asyncio.get_running_loop().time()
    event = await asyncio.wait_for(layer.receive(watcher), timeout=TTL * 3)
    gone_after = asyncio.get_running_loop().time() - started
    assert '"users":["bob"]' in event["frame"].replace(" ", ""), event
    assert gone_after <= TTL * 4 / 3 + 1
    assert await b.users(room_id=3) == ["bob"]


async def test_only_one_worker_announces_a_ghost(workers):
    a, b, c = workers
    await a.add(room_id=4, room_slug="r4", username="ghost", socket_id="ch-a")
    await b.add(room_id=4, room_slug="r4", username="bob", socket_id="ch-b")
    await c.add(room_id=4, room_slug="r4", username="carol", socket_id="ch-c")
    a.task.cancel()
    b.task.cancel()
    c.task.cancel()
    announced = []

    async def record(room_id, slug, *, joined=None, left=None):
        announced.append((room_id, left or []))

    for worker in (b, c):
        worker._announce = record
    await asyncio.sleep(TTL + 0.2)
    await asyncio.gather(b.beat(), c.beat())  # both reap A's lease at once; the script is atomic
    assert len([left for room, left in announced if room == 4 and "ghost" in left]) == 1


async def test_a_socket_that_left_is_not_brought_back_by_a_late_heartbeat(workers):
    a, b, _ = workers
    await a.add(room_id=5, room_slug="r5", username="alice", socket_id="ch-a")
    script = a._heartbeat

    async def leave_then_beat(**kwargs):  # the leave lands between reading the list and the script
        await a.remove(room_id=5, username="alice", socket_id="ch-a")
        return await script(**kwargs)

    a._heartbeat = leave_then_beat
    await a.beat()
    assert await b.users(room_id=5) == []


async def test_an_entry_lost_while_its_socket_lives_comes_back(workers):
    """Redis restarted empty (or swept this worker after a stall): the next heartbeat restores it."""
    a, b, _ = workers
    await a.add(room_id=6, room_slug="r6", username="alice", socket_id="ch-a")
    await a._redis().flushdb()
    assert await b.users(room_id=6) == []
    await a.beat()
    assert await b.users(room_id=6) == ["alice"]


async def test_typing_throttle_is_shared_by_workers(workers):
    a, b, _ = workers
    assert await a.typing_allowed(room_id=7, user_id=1, interval=0.5) is True
    assert await b.typing_allowed(room_id=7, user_id=1, interval=0.5) is False
    assert await b.typing_allowed(room_id=7, user_id=2, interval=0.5) is True
    await asyncio.sleep(0.6)
    assert await b.typing_allowed(room_id=7, user_id=1, interval=0.5) is True


async def test_count_and_pages_across_workers(workers):
    a, b, c = workers
    for i, name in enumerate(["dan", "ann", "cal", "bea", "eve"]):
        await workers[i % 3].add(room_id=8, room_slug="r8", username=name, socket_id=f"ch-{i}")
    await c.add(room_id=8, room_slug="r8", username="ann", socket_id="ch-ann-2")  # a second tab, elsewhere
    assert await c.count(room_id=8) == 5
    assert await c.page(room_id=8, after=None, limit=2) == (["ann", "bea"], True)
    assert await c.page(room_id=8, after="bea", limit=2) == (["cal", "dan"], True)
    assert await c.page(room_id=8, after="dan", limit=2) == (["eve"], False)
    assert await c.online_of(room_id=8, usernames=["ann", "zed"]) == (5, {"ann"})
    assert await b.remove(room_id=8, username="ann", socket_id="ch-1") is False  # still open on worker C
    assert await c.remove(room_id=8, username="ann", socket_id="ch-ann-2") is True
    assert await c.users(room_id=8) == ["bea", "cal", "dan", "eve"]


async def test_snapshots_from_any_worker_are_ordered_by_the_moment_they_were_read(workers):
    """A list read later has a larger version, whichever worker read it: a client holding the
    newer list can drop an older one that another worker's announcement delivers late."""
    a, b, c = workers
    await a.add(room_id=9, room_slug="r9", username="bea", socket_id="s-1")
    first = await b.snapshot(room_id=9, limit=10)
    await c.add(room_id=9, room_slug="r9", username="ann", socket_id="s-2")
    second = await a.snapshot(room_id=9, limit=10)
    assert (first.names, first.online) == (["bea"], 1)
    assert (second.names, second.online) == (["ann", "bea"], 2)
    assert second.version > first.version
    capped = await c.snapshot(room_id=9, limit=1)
    assert (capped.names, capped.online) == (["ann"], 2) and capped.version > second.version


async def commands_per_beat(worker):
    """Redis commands a heartbeat costs (the script call and the commands it runs)."""
    stats = worker._redis().info("commandstats")

    def total(info):
        return sum(entry["calls"] for name, entry in info.items() if name != "cmdstat_info")

    before = total(await stats)
    await worker.beat()
    return total(await worker._redis().info("commandstats")) - before


async def test_the_heartbeat_costs_the_same_at_any_socket_count(workers):
    a, _, _ = workers
    await a.add(room_id=9, room_slug="r9", username="u0", socket_id="ch-0")
    await a.beat()
    one = await commands_per_beat(a)
    for i in range(1, 2000):
        await a.add(room_id=9 + i % 5, room_slug="r", username=f"u{i}", socket_id=f"ch-{i}")
    many = await commands_per_beat(a)
    assert one == many <= 6, (one, many)


async def test_a_dead_worker_in_a_large_room_is_announced_as_a_change(workers, settings):
    settings.CHAT_PRESENCE_LIST_MAX = 3
    settings.CHAT_PRESENCE_BATCH_SECONDS = 0.2
    a, b, _ = workers
    layer = get_channel_layer()
    watcher = await layer.new_channel()
    await layer.group_add(events.room_group(10), watcher)
    for i in range(4):
        await a.add(room_id=10, room_slug="r10", username=f"ghost{i}", socket_id=f"ch-a{i}")
    await a.add(room_id=10, room_slug="r10", username="both", socket_id="ch-a-both")
    await b.add(room_id=10, room_slug="r10", username="both", socket_id="ch-b-both")
    for i in range(3):
        await b.add(room_id=10, room_slug="r10", username=f"live{i}", socket_id=f"ch-b{i}")
    a.task.cancel()  # SIGKILL
    started = asyncio.get_running_loop().time()
    event = await asyncio.wait_for(layer.receive(watcher), timeout=TTL * 3)
    gone_after = asyncio.get_running_loop().time() - started
    frame = json.loads(event["frame"])
    assert frame == {
        "type": "presence",
        "room": "r10",
        "left": ["ghost0", "ghost1", "ghost2", "ghost3"],  # not "both": worker B still holds them
        "online": 4,
    }
    assert gone_after <= TTL * 4 / 3 + 1


async def test_a_departure_redis_missed_is_written_by_the_next_beat(workers):
    """Redis did not answer when the user left: this worker's lease stays alive, so nothing would
    lapse; the heartbeat writes the departure and tells the room."""
    a, b, _ = workers
    await a.add(room_id=11, room_slug="r11", username="alice", socket_id="ch-a")
    script = a._remove

    async def unavailable(**kwargs):
        raise ConnectionError("Redis is away")

    a._remove = unavailable
    with pytest.raises(ConnectionError):
        await a.remove(room_id=11, username="alice", socket_id="ch-a")
    a._remove = script
    assert await b.users(room_id=11) == ["alice"]
    announced = []

    async def record(room_id, slug, *, joined=None, left=None):
        announced.append((room_id, slug, left))

    a._announce = record
    await a.beat()
    assert await b.users(room_id=11) == []
    assert announced == [(11, "r11", ["alice"])]


async def test_a_restore_cut_short_by_a_failing_beat_is_done_by_the_next(workers):
    """Redis lost this worker's entries, and the beat that found out failed before putting them
    back (a departure it retries raised first): the lease is held again from then on, so only the
    worker's own note brings the entries back on the next beat. Connected users are not left
    offline."""
    a, b, _ = workers
    await a.add(room_id=12, room_slug="r12", username="alice", socket_id="ch-a")
    await a.add(room_id=12, room_slug="r12", username="bob", socket_id="ch-b")
    await a.beat()  # settled: a new worker's first entry found no lease, and this beat restored it
    assert a.restore is False
    script = a._remove

    async def unavailable(**kwargs):
        raise ConnectionError("Redis is away")

    a._remove = unavailable
    with pytest.raises(ConnectionError):
        await a.remove(room_id=12, username="bob", socket_id="ch-b")  # bob's departure is owed
    await a._redis().flushdb()  # Redis restarted empty
    with pytest.raises(ConnectionError):
        await a.beat()  # retrying bob's departure fails again, before the restore
    a._remove = script
    assert await b.users(room_id=12) == []
    await a.beat()
    assert await b.users(room_id=12) == ["alice"]


async def test_a_restore_that_fails_midway_is_finished_by_the_next_beat(workers):
    a, b, _ = workers
    await a.add(room_id=13, room_slug="r13", username="alice", socket_id="ch-a")
    await a.add(room_id=14, room_slug="r14", username="bob", socket_id="ch-b")
    await a.beat()
    assert a.restore is False
    await a._redis().flushdb()
    script = a._add
    calls = 0

    async def second_fails(**kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("Redis is away")
        return await script(**kwargs)

    a._add = second_fails
    with pytest.raises(ConnectionError):
        await a.beat()
    a._add = script
    assert [await b.users(room_id=13), await b.users(room_id=14)].count([]) == 1  # one back, one not
    await a.beat()
    assert (await b.users(room_id=13), await b.users(room_id=14)) == (["alice"], ["bob"])
    assert a.restore is False
