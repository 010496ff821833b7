"""Presence in Redis, shared by every worker (REDIS_URL set).

Entries are held under a lease per worker, not per socket: each worker pushes its own lease
forward every CHAT_PRESENCE_TTL / 3 seconds with one script call, whatever number of sockets it
holds. The same call reaps the workers whose lease lapsed (SIGKILL, a lost host): their users
leave every room they were in, unless another worker still holds them, atomically (exactly one
worker reaps each dead worker) and the reaper tells those rooms (chat.realtime.presence.announce),
so a ghost disappears from open pages within about 4/3 of the TTL.

Per-user counting: a user is online in a room while any worker holds them there; each worker
counts its own sockets per user in memory, and writes to Redis only when a user's first socket
arrives on it or their last one leaves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable
from typing import Any, cast

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from chat.realtime.presence.snapshot import Snapshot

logger = logging.getLogger(__name__)


# Keys, for room R, user U and worker W (times are Redis' own clock, in ms, so workers' clocks
# never matter):
#   chat:presence:R:users     sorted set, every score 0 (so it sorts by name): who is online in R
#   chat:presence:R:user:U    set of the workers that hold U in R
#   chat:presence:workers     sorted set, W -> the expiry of W's lease
#   chat:presence:w:W         hash, R -> R's slug, the rooms where W holds someone
#   chat:presence:w:W:R       set of the users W holds in R
PREFIX = "chat:presence:"
READY_SECONDS = 1.0
WORKERS = PREFIX + "workers"
REAP_PER_BEAT = 8  # dead workers reaped by one heartbeat (the next one takes the rest)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: users, user, worker's rooms, worker's room, workers. ARGV: username, worker, room, slug, ttl_ms.
# Returns {1 if the user came online, 1 if this worker had no lease (lapsed and reaped, or Redis lost it)}.
_ADD = (
    _NOW
    + """
local had = redis.call('ZSCORE', KEYS[5], ARGV[2])
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[5]), ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[4], ARGV[1])
local came = redis.call('ZADD', KEYS[1], 0, ARGV[1])
if had == false then return {came, 1} end
return {came, 0}
"""
)

# KEYS: users, user, worker's rooms, worker's room. ARGV: username, worker, room.
# Returns 1 if no worker holds the user in the room any more.
_REMOVE = """
redis.call('SREM', KEYS[4], ARGV[1])
if redis.call('SCARD', KEYS[4]) == 0 then redis.call('HDEL', KEYS[3], ARGV[3]) end
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# KEYS: workers. ARGV: prefix, worker, ttl_ms, how many dead workers to reap at most.
# Pushes this worker's lease forward, then reaps lapsed workers. Returns {1 if this worker's lease
# was missing, then (room, slug, {users gone}) for each room that lost someone}.
_HEARTBEAT = (
    _NOW
    + """
local prefix, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local had = redis.call('ZSCORE', KEYS[1], me)
redis.call('ZADD', KEYS[1], now + ttl, me)
local out = {0}
if had == false then out[1] = 1 end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, w in ipairs(dead) do
  redis.call('ZREM', KEYS[1], w)
  local wrooms = prefix .. 'w:' .. w
  local rooms = redis.call('HGETALL', wrooms)
  for i = 1, #rooms, 2 do
    local room, slug = rooms[i], rooms[i + 1]
    local wroom = wrooms .. ':' .. room
    local gone = {}
    for _, user in ipairs(redis.call('SMEMBERS', wroom)) do
      local user_key = prefix .. room .. ':user:' .. user
      redis.call('SREM', user_key, w)
      if redis.call('SCARD', user_key) == 0 then
        if redis.call('ZREM', prefix .. room .. ':users', user) == 1 then table.insert(gone, user) end
      end
    end
    redis.call('DEL', wroom)
    if #gone > 0 then
      table.insert(out, room); table.insert(out, slug); table.insert(out, gone)
    end
  end
  redis.call('DEL', wrooms)
end
return out
"""
)


# KEYS: users. ARGV: limit. Returns {seconds, microseconds (Redis' clock), count, {first names}}:
# read in one script, so the names, the count and the version are of one moment.
_SNAPSHOT = """
local t = redis.call('TIME')
return {t[1], t[2], redis.call('ZCARD', KEYS[1]), redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)}
"""


class RedisPresence:
    def __init__(self, url: str, *, ttl: float) -> None:
        self.url = url
        self.ttl_ms = int(ttl * 1000)
        self.interval = ttl / 3
        self._ready_at = -READY_SECONDS  # when Redis last answered `ready`'s PING
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # This worker's sockets: room id -> {username: {socket id}}; and the rooms' slugs.
        self.local: dict[int, dict[str, set[str]]] = {}
        self.slugs: dict[int, str] = {}
        self.restore = False  # the lease was lost: put this worker's entries back on the next beat
        self.losses = 0  # times the lease was found lost: a restore is done only if none came during it
        # Departures that could not be written (Redis away): retried by each beat until they are,
        # as this worker's live lease would otherwise keep those users listed. (room id, username)
        self.unreleased: dict[tuple[int, str], str] = {}  # -> the room's slug
        self.task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        # The Lua scripts, registered with each new client (see _redis).
        self._add: AsyncScript
        self._remove: AsyncScript
        self._heartbeat: AsyncScript
        self._snapshot: AsyncScript

    # One client per event loop (Daphne has one; tests may have several in turn).
    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
            )
            self._add = self._client.register_script(_ADD)
            self._remove = self._client.register_script(_REMOVE)
            self._heartbeat = self._client.register_script(_HEARTBEAT)
            self._snapshot = self._client.register_script(_SNAPSHOT)
        return self._client

    def _keys(self, room_id: int, username: str) -> list[str]:
        mine = f"{PREFIX}w:{self.worker}"
        return [f"{PREFIX}{room_id}:users", f"{PREFIX}{room_id}:user:{username}", mine, f"{mine}:{room_id}"]

    async def add(self, *, room_id: int, room_slug: str, username: str, socket_id: str) -> bool:
        self._redis()
        sockets = self.local.setdefault(room_id, {}).setdefault(username, set())
        first_here = not sockets
        sockets.add(socket_id)
        self.slugs[room_id] = room_slug
        self._ensure_task()
        if not first_here:  # this worker already holds the user in the room
            return False
        return await self._hold(room_id, room_slug, username)

    async def _hold(self, room_id: int, room_slug: str, username: str) -> bool:
        came, lease_lost = await self._add(
            keys=[*self._keys(room_id, username), WORKERS],
            args=[username, self.worker, room_id, room_slug, self.ttl_ms],
        )
        if lease_lost:
            self._lost()  # this worker's other entries may be gone too
        return bool(came)

    def _lost(self) -> None:
        self.restore = True
        self.losses += 1

    async def remove(self, *, room_id: int, username: str, socket_id: str) -> bool:
        self._redis()
        users = self.local.get(room_id)
        sockets = users.get(username) if users is not None else None
        if users is None or sockets is None or socket_id not in sockets:
            return False
        sockets.discard(socket_id)
        if sockets:
            return False
        del users[username]
        slug = self.slugs.get(room_id, "")
        if not users:
            del self.local[room_id]
            self.slugs.pop(room_id, None)
        try:
            went = await self._remove(keys=self._keys(room_id, username), args=[username, self.worker, room_id])
        except Exception:
            self.unreleased[(room_id, username)] = slug
            raise
        return bool(went)

    async def ready(self) -> None:
        """Raise RedisError or OSError if Redis does not answer a PING: at most one PING a second
        (READY_SECONDS), not one per handshake. In a burst of 1,000 connects the PINGs took 9% of
        the worker (py-spy); a Redis that died since the last one is found by the handshake's
        next Redis call instead (the fan-out's subscribe: closed with 4503)."""
        now = time.monotonic()
        if now - self._ready_at < READY_SECONDS:
            return
        await cast(Awaitable[bool], self._redis().ping())  # asyncio (see typing_allowed)
        self._ready_at = now

    async def users(self, *, room_id: int) -> list[str]:
        names = await cast(Awaitable[list[bytes]], self._redis().zrange(f"{PREFIX}{room_id}:users", 0, -1))
        return [name.decode() for name in names]

    async def count(self, *, room_id: int) -> int:
        return int(await cast(Awaitable[int], self._redis().zcard(f"{PREFIX}{room_id}:users")))

    async def page(self, *, room_id: int, after: str | None, limit: int) -> tuple[list[str], bool]:
        start = "-" if after is None else "(" + after
        names = await cast(
            Awaitable[list[bytes]],
            self._redis().zrangebylex(f"{PREFIX}{room_id}:users", start, "+", start=0, num=limit + 1),
        )
        return [name.decode() for name in names[:limit]], len(names) > limit

    async def snapshot(self, *, room_id: int, limit: int) -> Snapshot:
        """The version is Redis' clock at the read: every worker reads the same clock, and it does
        not start over when Redis restarts empty."""
        self._redis()
        seconds, micros, online, names = await self._snapshot(keys=[f"{PREFIX}{room_id}:users"], args=[limit])
        version = int(seconds) * 1_000_000 + int(micros)
        return Snapshot([name.decode() for name in names], int(online), version)

    async def online_of(self, *, room_id: int, usernames: list[str]) -> tuple[int, set[str]]:
        """The room's count, and which of `usernames` are online, in one round trip."""
        key = f"{PREFIX}{room_id}:users"
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.zcard(key)
            if usernames:
                pipe.zmscore(key, usernames)
            replies: list[Any] = await pipe.execute()
        scores = replies[1] if usernames else []
        return int(replies[0]), {name for name, score in zip(usernames, scores, strict=True) if score is not None}

    async def typing_allowed(self, *, room_id: int, user_id: int, interval: float) -> bool:
        key = f"chat:typing:{room_id}:{user_id}"
        # redis-py types each command for its sync and asyncio clients at once: this client is asyncio.
        is_set = cast(Awaitable[bool | None], self._redis().set(key, 1, px=max(1, int(interval * 1000)), nx=True))
        return bool(await is_set)

    # The heartbeat and the reaping -----------------------------------------------------------

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run(), name="chat-presence-heartbeat")

    async def _run(self) -> None:
        while self.local or self.unreleased:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:  # Redis is away: the lease lapses, and the entries come back on a later beat
                logger.warning("Presence heartbeat failed", exc_info=True)

    async def beat(self) -> None:
        """Push this worker's lease forward (one script call, whatever it holds), reap the workers
        whose lease lapsed and tell their rooms."""
        self._redis()
        reply = await self._heartbeat(keys=[WORKERS], args=[PREFIX, self.worker, self.ttl_ms, REAP_PER_BEAT])
        lease_lost, reaped = bool(reply[0]), reply[1:]
        if lease_lost:
            # Noted at once: the script has made the lease again, so later beats report it held,
            # and should anything below raise, the next beat must still put the entries back.
            self._lost()
        for i in range(0, len(reaped), 3):
            room_id, slug = int(reaped[i]), reaped[i + 1].decode()
            await self._announce(room_id, slug, left=[name.decode() for name in reaped[i + 2]])
        for (room_id, username), slug in list(self.unreleased.items()):
            if username in self.local.get(room_id, {}):  # back meanwhile: nothing to release
                del self.unreleased[(room_id, username)]
                continue
            went = await self._remove(keys=self._keys(room_id, username), args=[username, self.worker, room_id])
            del self.unreleased[(room_id, username)]
            if went:
                await self._announce(room_id, slug, left=[username])
        if self.restore:
            # Redis restarted empty, or this worker stalled past its lease and was reaped while its
            # sockets live: put its entries back and tell the rooms. Done only once every entry is
            # back (a failure midway leaves it to the next beat; holding twice is harmless) and no
            # loss was found meanwhile.
            losses = self.losses
            for room_id, users in list(self.local.items()):
                came = [name for name in list(users) if await self._hold(room_id, self.slugs[room_id], name)]
                if came:
                    await self._announce(room_id, self.slugs[room_id], joined=came)
            if self.losses == losses:
                self.restore = False

    async def _announce(
        self, room_id: int, slug: str, *, joined: list[str] | None = None, left: list[str] | None = None
    ) -> None:
        from chat.realtime.presence.announce import get_announcer  # it reads this backend

        await get_announcer().changed(self, room_id=room_id, room_slug=slug, joined=joined or [], left=left or [])
