"""Presence in Redis, shared by every worker (REDIS_URL set).

A socket's entry carries an expiry that its worker pushes forward every CHAT_PRESENCE_TTL / 3
seconds (a heartbeat), so the entries of a worker that died without running any disconnect
handler (SIGKILL, a lost host) lapse by themselves. Every worker sweeps the rooms its own sockets
are in, removes lapsed users atomically (one Lua script: exactly one worker wins each removal) and
broadcasts the new list, so a ghost disappears from open pages within about 4/3 of the TTL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import cast

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from chat import events

logger = logging.getLogger(__name__)


# Keys, for room R and user U (times are Redis' own clock, in ms, so workers' clocks never matter):
#   chat:presence:R:users    sorted set, U -> the latest expiry among U's sockets in R
#   chat:presence:R:user:U   sorted set, socket id -> that socket's expiry
# Both keys also get a key TTL of three presence TTLs, so a room whose workers all died leaves
# nothing behind.
PREFIX = "chat:presence:"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: users, user. ARGV: username, socket id, ttl_ms. Returns 1 if the user came online.
_ADD = (
    _NOW
    + """
local ttl = tonumber(ARGV[3])
local exp = now + ttl
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], exp, ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 3)
redis.call('PEXPIRE', KEYS[2], ttl * 3)
if old == false or tonumber(old) <= now then return 1 end
return 0
"""
)

# KEYS: users, user. ARGV: username, socket id. Returns 1 if that was the user's last live socket.
_REMOVE = (
    _NOW
    + """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #top == 0 then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[1], top[2], ARGV[1])
return 0
"""
)

# KEYS: users. Returns the users with a live socket.
_USERS = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
)

# ARGV: prefix, ttl_ms, then (room, username, socket id) triples: push each socket's expiry forward.
# Only entries that still exist are refreshed (XX): a socket that left while the heartbeat was on
# its way is not brought back. Returns the flat triples that were missing.
_HEARTBEAT = (
    _NOW
    + """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local exp = now + ttl
local missing = {}
for i = 3, #ARGV, 3 do
  local room, user, chan = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local users_key = prefix .. room .. ':users'
  local user_key = prefix .. room .. ':user:' .. user
  if redis.call('ZSCORE', user_key, chan) == false then
    table.insert(missing, room); table.insert(missing, user); table.insert(missing, chan)
  else
    redis.call('ZADD', user_key, 'XX', exp, chan)
    redis.call('ZADD', users_key, 'GT', exp, user)
    redis.call('PEXPIRE', user_key, ttl * 3)
    redis.call('PEXPIRE', users_key, ttl * 3)
  end
end
return missing
"""
)

# ARGV: prefix, then room ids. Removes users whose every socket lapsed; returns the rooms that
# changed. Atomic, so when several workers sweep the same room, one of them reports each change.
_SWEEP = (
    _NOW
    + """
local prefix = ARGV[1]
local changed = {}
for i = 2, #ARGV do
  local users_key = prefix .. ARGV[i] .. ':users'
  local gone = redis.call('ZRANGEBYSCORE', users_key, '-inf', now)
  for _, user in ipairs(gone) do
    redis.call('ZREM', users_key, user)
    redis.call('DEL', prefix .. ARGV[i] .. ':user:' .. user)
  end
  if #gone > 0 then table.insert(changed, ARGV[i]) end
end
return changed
"""
)


class RedisPresence:
    def __init__(self, url: str, *, ttl: float) -> None:
        self.url = url
        self.ttl_ms = int(ttl * 1000)
        self.interval = ttl / 3
        # This worker's sockets, for the heartbeat and the sweep: room id -> {socket id: username}.
        self.local: dict[int, dict[str, str]] = {}
        self.slugs: dict[int, str] = {}
        self.task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        # The Lua scripts, registered with each new client (see _redis).
        self._add: AsyncScript
        self._remove: AsyncScript
        self._users: AsyncScript
        self._heartbeat: AsyncScript
        self._sweep: AsyncScript

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
            self._users = self._client.register_script(_USERS)
            self._heartbeat = self._client.register_script(_HEARTBEAT)
            self._sweep = self._client.register_script(_SWEEP)
        return self._client

    @staticmethod
    def _keys(room_id: int, username: str) -> list[str]:
        return [f"{PREFIX}{room_id}:users", f"{PREFIX}{room_id}:user:{username}"]

    async def add(self, *, room_id: int, room_slug: str, username: str, socket_id: str) -> bool:
        self._redis()
        self.local.setdefault(room_id, {})[socket_id] = username
        self.slugs[room_id] = room_slug
        self._ensure_task()
        came = await self._add(keys=self._keys(room_id, username), args=[username, socket_id, self.ttl_ms])
        return bool(came)

    async def remove(self, *, room_id: int, username: str, socket_id: str) -> bool:
        self._redis()
        sockets = self.local.get(room_id)
        if sockets is not None:
            sockets.pop(socket_id, None)
            if not sockets:
                del self.local[room_id]
                self.slugs.pop(room_id, None)
        went = await self._remove(keys=self._keys(room_id, username), args=[username, socket_id])
        return bool(went)

    async def ready(self) -> None:
        """Raise RedisError or OSError if Redis does not answer a PING."""
        await cast(Awaitable[bool], self._redis().ping())  # asyncio (see typing_allowed)

    async def users(self, *, room_id: int) -> list[str]:
        self._redis()
        names = await self._users(keys=[f"{PREFIX}{room_id}:users"])
        return sorted(name.decode() for name in names)

    async def typing_allowed(self, *, room_id: int, user_id: int, interval: float) -> bool:
        key = f"chat:typing:{room_id}:{user_id}"
        # redis-py types each command for its sync and asyncio clients at once: this client is asyncio.
        is_set = cast(Awaitable[bool | None], self._redis().set(key, 1, px=max(1, int(interval * 1000)), nx=True))
        return bool(await is_set)

    # The heartbeat and the sweep -------------------------------------------------------------

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run(), name="chat-presence-heartbeat")

    async def _run(self) -> None:
        while self.local:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:  # Redis is away: the entries lapse, and come back on the next beat
                logger.warning("Presence heartbeat failed", exc_info=True)

    async def beat(self) -> None:
        """Refresh this worker's entries, then sweep lapsed users out of its rooms."""
        self._redis()
        args: list[str | int] = [PREFIX, self.ttl_ms]
        for room_id, sockets in list(self.local.items()):
            for socket_id, username in list(sockets.items()):
                args += [room_id, username, socket_id]
        missing = await self._heartbeat(args=args) if len(args) > 2 else []
        # An entry that vanished while its socket is still here (Redis restarted, or this worker
        # stalled past the TTL and was swept): put it back and tell the room.
        for i in range(0, len(missing), 3):
            room_id, username, socket_id = int(missing[i]), missing[i + 1].decode(), missing[i + 2].decode()
            if self.local.get(room_id, {}).get(socket_id) == username:
                if await self.add(
                    room_id=room_id, room_slug=self.slugs[room_id], username=username, socket_id=socket_id
                ):
                    await self._announce(room_id)
        rooms = list(self.local)
        changed = await self._sweep(args=[PREFIX, *rooms]) if rooms else []
        for raw in changed:
            await self._announce(int(raw))

    async def _announce(self, room_id: int) -> None:
        slug = self.slugs.get(room_id)
        if slug is not None:
            await events.presence(room_id=room_id, room_slug=slug, users=await self.users(room_id=room_id))
