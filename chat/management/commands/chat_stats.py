"""`python manage.py chat_stats [--json] [--top N]`: rooms, message rates, the busiest rooms of the
last hour, and who is online per room.

Online users come from the Redis presence keys (chat.realtime.presence.redis) when REDIS_URL is set: the
`chat:presence:<room id>:users` sorted sets. A user counts while a worker whose lease has not
lapsed (by Redis' own clock) holds them: a dead worker's users, not reaped yet, do not count.
Without REDIS_URL, presence
lives in each worker's memory and this command cannot see it: it says so.
"""

from __future__ import annotations

import json
import re
from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

import redis
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count, Q
from django.utils import timezone

from chat.models import Message, Room
from chat.realtime.presence.redis import PREFIX, WORKERS

WINDOWS = {"last_minute": timedelta(minutes=1), "last_hour": timedelta(hours=1), "last_day": timedelta(days=1)}
PER_PROCESS = "presence is per-process without REDIS_URL (each worker's memory): run this with REDIS_URL set"


class BusyRoom(TypedDict):
    room: str
    messages: int


class OnlineRoom(TypedDict):
    room: str
    count: int
    users: list[str]


class Online(TypedDict):
    source: str  # "redis" or "per-process"
    users: NotRequired[int]
    rooms: NotRequired[list[OnlineRoom]]
    error: NotRequired[str]  # Redis did not answer
    detail: NotRequired[str]  # why there is nothing to show


class Stats(TypedDict):
    time: str
    rooms: dict[str, int]
    messages: dict[str, int]
    busiest_last_hour: list[BusyRoom]
    online: NotRequired[Online]


def room_stats() -> dict[str, int]:
    return Room.objects.aggregate(
        total=Count("pk"), archived=Count("pk", filter=Q(archived=True)), private=Count("pk", filter=Q(private=True))
    )


def message_stats(now: datetime) -> dict[str, int]:
    windows = {name: Count("pk", filter=Q(created_at__gt=now - span)) for name, span in WINDOWS.items()}
    return Message.objects.aggregate(total=Count("pk"), deleted=Count("pk", filter=Q(deleted=True)), **windows)


def busiest_rooms(now: datetime, top: int) -> list[BusyRoom]:
    rows = (
        Message.objects.filter(created_at__gt=now - WINDOWS["last_hour"])
        .values("room__slug")
        .annotate(messages=Count("pk"))
        .order_by("-messages", "room__slug")[:top]
    )
    return [{"room": row["room__slug"], "messages": row["messages"]} for row in rows]


def online_users(url: str) -> list[OnlineRoom]:
    """Every room with someone online, busiest first, read from the presence keys in Redis."""
    pattern = re.compile(rf"^{re.escape(PREFIX)}(\d+):users$")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
    try:
        # redis-py types each command for its sync and asyncio clients at once (a result or an
        # awaitable); this client is the sync one.
        seconds, micros = cast(tuple[int, int], client.time())
        now_ms = seconds * 1000 + micros // 1000
        live = set(cast(list[bytes], client.zrangebyscore(WORKERS, f"({now_ms}", "+inf")))
        online: dict[int, list[str]] = {}
        for key in client.scan_iter(match=f"{PREFIX}*:users", count=500):
            match = pattern.match(key.decode())
            if match is None:
                continue
            names = cast(list[bytes], client.zrange(key, 0, -1))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.smembers(f"{PREFIX}{match.group(1)}:user:{name.decode()}")
            holders = cast(list[set[bytes]], pipe.execute())
            users = [name for name, held_by in zip(names, holders, strict=True) if held_by & live]
            if users:
                online[int(match.group(1))] = sorted(name.decode() for name in users)
    finally:
        client.close()
    slugs = dict(Room.objects.filter(pk__in=online).values_list("pk", "slug"))
    rooms: list[OnlineRoom] = [
        {"room": slugs.get(room_id, f"#{room_id} (deleted)"), "count": len(users), "users": users}
        for room_id, users in online.items()
    ]
    return sorted(rooms, key=lambda row: (-row["count"], row["room"]))


class Command(BaseCommand):
    help = "Rooms, message rates, the busiest rooms of the last hour and online users per room."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object, for scripts")
        parser.add_argument("--top", type=int, default=10, help="how many of the busiest rooms to list (default 10)")

    def handle(self, *args: Any, as_json: bool = False, top: int = 10, **options: Any) -> None:
        now = timezone.now()
        stats: Stats = {
            "time": now.isoformat(timespec="seconds"),
            "rooms": room_stats(),
            "messages": message_stats(now),
            "busiest_last_hour": busiest_rooms(now, max(top, 0)),
        }
        if settings.REDIS_URL:
            try:
                rooms = online_users(settings.REDIS_URL)
                stats["online"] = {
                    "source": "redis",
                    "users": len({u for r in rooms for u in r["users"]}),
                    "rooms": rooms,
                }
            except (redis.RedisError, OSError) as error:  # Redis is away: the rest of the report stands
                stats["online"] = {"source": "redis", "error": f"Redis did not answer: {error.__class__.__name__}"}
        else:
            stats["online"] = {"source": "per-process", "detail": PER_PROCESS}

        if as_json:
            self.stdout.write(json.dumps(stats, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(self.render(stats))

    @staticmethod
    def render(stats: Stats) -> str:
        rooms, messages = stats["rooms"], stats["messages"]
        lines = [
            f"Rooms: {rooms['total']} ({rooms['archived']} archived, {rooms['private']} private)",
            f"Messages: {messages['total']} stored ({messages['deleted']} deleted); "
            f"{messages['last_minute']} in the last minute, {messages['last_hour']} in the last hour, "
            f"{messages['last_day']} in the last day",
            "",
            "Busiest rooms in the last hour:",
        ]
        busiest = stats["busiest_last_hour"]
        width = max((len(row["room"]) for row in busiest), default=0)
        lines += [f"  {row['room']:<{width}}  {row['messages']}" for row in busiest] or ["  (no messages)"]
        lines.append("")
        online = stats["online"]
        if online["source"] != "redis":
            lines.append(f"Online users: unknown: {online['detail']}.")
        elif "error" in online:
            lines.append(f"Online users: unknown: {online['error']}.")
        else:
            lines.append(f"Online users (Redis presence): {online['users']}")
            width = max((len(row["room"]) for row in online["rooms"]), default=0)
            for row in online["rooms"]:
                names = ", ".join(row["users"][:10]) + (", …" if row["count"] > 10 else "")
                lines.append(f"  {row['room']:<{width}}  {row['count']}  ({names})")
            if not online["rooms"]:
                lines.append("  (nobody)")
        return "\n".join(lines)
