"""The Django side of `make bench-search` (bench/search.py runs it, once per database, with
DATABASE_URL pointing at that database; not a command to run by hand).

    python -m bench.search_db load --messages N --meta FILE      # after `manage.py migrate`
    python -m bench.search_db measure --meta FILE --runs N --output FILE

`load` fills a migrated, empty database with bench/search_data.py's world: users, rooms,
memberships and bans through the ORM, then the messages in bulk in one transaction
(PostgreSQL's COPY, SQLite's executemany). The indexes on the messages (the search index among
them) are dropped first and built again after the rows are in, as one loads a big table: on
PostgreSQL by their own definitions (a plain CREATE INDEX, at the server's default
maintenance_work_mem), on SQLite the FTS5 table's triggers are set aside and
chat.search.sqlite_install puts them back and fills the table from the live messages, as the
migration does. It writes FILE: the load's timings, each query's expected matches per room.

`measure` calls chat.search.search_messages in this process as the searcher, for each query of
the mix, with and without a room filter: one warm-up round that also checks every result
against the expected counts, then N timed rounds (the queries interleaved).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django

from bench import search_data as data


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()


# Load ------------------------------------------------------------------------------------------


class MessageRows:
    """The messages as rows for MESSAGE_COLUMNS (+ the defaults of the columns this file does not
    know), once; while they are made, each room's last seq and each query's matches are counted."""

    def __init__(self, world: data.World, count: int, rng: random.Random, users: list[int], rooms: list[int], defaults):
        self.world, self.count, self.rng, self.users, self.rooms, self.defaults = (
            world,
            count,
            rng,
            users,
            rooms,
            defaults,
        )
        self.seqs = [0] * len(world.rooms)
        self.counts = data.Counts()

    def __iter__(self):
        from chat.formatting import plain

        start = datetime(2025, 1, 1, tzinfo=UTC)
        for i, (room_index, author, body, deleted) in enumerate(data.messages(self.world, self.count, self.rng)):
            self.seqs[room_index] += 1
            seq = self.seqs[room_index]
            self.counts.add(room_index, body, deleted)
            # id, room, author, body, html, seq, rev (only creations happened: its seq), created_at, deleted
            yield (
                i + 1,
                self.rooms[room_index],
                self.users[author],
                body,
                plain(body),
                seq,
                seq,
                start + timedelta(seconds=30 * i),
                deleted,
                *self.defaults,
            )


MESSAGE_COLUMNS = ["id", "room_id", "author_id", "body", "html", "seq", "rev", "created_at", "deleted"]


def _other_columns(connection) -> tuple[list[str], list[Any]]:
    """The message columns this file does not set, with their defaults (null, 0, [] ...): a
    column added by a later migration loads with its model default."""
    from chat.models import Message

    names, values = [], []
    for model_field in Message._meta.concrete_fields:
        if model_field.column in MESSAGE_COLUMNS:
            continue
        default = model_field.get_default()
        if default is None and not model_field.null:
            raise SystemExit(f"bench.search_db does not know how to fill chat_message.{model_field.column}")
        names.append(model_field.column)
        values.append(model_field.get_db_prep_save(default, connection))
    return names, values


def _pg_load(connection, columns: list[str], rows) -> dict[str, Any]:
    with connection.cursor() as cursor:
        # The foreign keys are checked row by row as the rows go in, not queued to the commit
        # (Django's are deferred, and an index cannot be built over pending checks).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'chat_message' AND indexname NOT IN "
            "(SELECT conindid::regclass::text FROM pg_constraint WHERE conrelid = 'chat_message'::regclass)"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        started = time.monotonic()
        with cursor.cursor.copy(f"COPY chat_message ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        timings: dict[str, Any] = {"rows_seconds": time.monotonic() - started, "indexes": {}}
        # The ids were given: the sequence goes past them, so a message stored later gets a new one.
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('chat_message', 'id'), (SELECT max(id) FROM chat_message))"
        )
        for name, definition in indexes:
            started = time.monotonic()
            cursor.execute(definition)
            timings["indexes"][name] = {"seconds": time.monotonic() - started, "definition": definition}
    return timings


def _sqlite_load(connection, columns: list[str], rows) -> dict[str, Any]:
    from django.db import transaction

    from chat import search

    raw = connection.connection
    raw.execute("PRAGMA synchronous = OFF")
    raw.execute("PRAGMA cache_size = -262144")  # 256 MiB, for the load
    schema = raw.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'chat_message' AND sql IS NOT NULL"
    ).fetchall()
    indexes = [(name, sql) for kind, name, sql in schema if kind == "index"]
    triggers = [(name, sql) for kind, name, sql in schema if kind == "trigger"]
    timings: dict[str, Any] = {"indexes": {}}
    with transaction.atomic():
        # The search index's triggers too: chat.search fills its FTS5 table once the rows are in.
        for name, _ in indexes:
            raw.execute(f'DROP INDEX "{name}"')
        for name, _ in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        started = time.monotonic()
        placeholders = ", ".join("?" for _ in columns)
        raw.executemany(f"INSERT INTO chat_message ({', '.join(columns)}) VALUES ({placeholders})", rows)
        timings["rows_seconds"] = time.monotonic() - started
        for name, sql in indexes:
            started = time.monotonic()
            raw.execute(sql)
            timings["indexes"][name] = {"seconds": time.monotonic() - started, "definition": sql}
        started = time.monotonic()
        search.sqlite_install(connection)  # its triggers, and the FTS5 table filled from the live messages
        timings["indexes"][search.FTS_TABLE] = {
            "seconds": time.monotonic() - started,
            "definition": "FTS5 trigram table, filled by chat.search.sqlite_install",
        }
        present = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        for name, sql in triggers:
            if name not in present:
                raw.execute(sql)
    return timings


def load(messages: int, meta_path: Path) -> None:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from chat.models import Ban, Membership, Room

    rng = random.Random(data.SEED)
    world = data.world(rng)
    started = time.monotonic()
    with transaction.atomic():
        password = {data.SEARCHER: make_password(data.SEARCHER_PASSWORD)}
        User.objects.bulk_create(User(username=name, password=password.get(name, "!")) for name in world.usernames)
        ids = dict(User.objects.values_list("username", "pk"))
        users = [ids[name] for name in world.usernames]
        room_objects = []
        for spec in world.rooms:
            member_ids = sorted(users[m] for m in spec.members)
            room_objects.append(
                Room(
                    slug=spec.slug,
                    name=spec.name or ", ".join(sorted(world.usernames[m] for m in spec.members)),
                    private=spec.private,
                    archived=spec.archived,
                    kind=Room.Kind.DIRECT if spec.direct else Room.Kind.ROOM,
                    direct_key=",".join(map(str, member_ids)) if spec.direct else None,
                )
            )
        Room.objects.bulk_create(room_objects)
        slugs = dict(Room.objects.values_list("slug", "pk"))
        rooms = [slugs[spec.slug] for spec in world.rooms]
        Membership.objects.bulk_create(
            Membership(room_id=rooms[r], user_id=users[m], invited=True)
            for r, spec in enumerate(world.rooms)
            for m in spec.members
        )
        Ban.objects.bulk_create(
            Ban(room_id=rooms[r], user_id=users[m]) for r, spec in enumerate(world.rooms) for m in spec.banned
        )
    other, defaults = _other_columns(connection)
    columns = MESSAGE_COLUMNS + other
    rows = MessageRows(world, messages, rng, users, rooms, defaults)
    if connection.vendor == "postgresql":
        with transaction.atomic():
            timings = _pg_load(connection, columns, rows)
    else:
        connection.ensure_connection()
        timings = _sqlite_load(connection, columns, rows)
    seqs = rows.seqs
    with transaction.atomic():
        for r, seq in enumerate(seqs):
            Room.objects.filter(pk=rooms[r]).update(last_seq=seq, last_rev=seq)
    started_analyze = time.monotonic()
    with connection.cursor() as cursor:
        # Every table: the planner needs chat_room's statistics too (without them a rare 2-character
        # query read the bigram index once per room: 97 ms p95 against 6 ms with them).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    timings["analyze_seconds"] = time.monotonic() - started_analyze
    timings["total_seconds"] = time.monotonic() - started
    counts = rows.counts
    meta = {
        "generator_version": data.GENERATOR_VERSION,
        "messages": messages,
        "vendor": connection.vendor,
        "load": timings,
        "rooms": [
            {"slug": s.slug, "messages": seqs[r], "searcher_reads": s.searcher_reads} for r, s in enumerate(world.rooms)
        ],
        "matches": {
            q: {world.rooms[r].slug: n for r, n in per_room.items()} for q, per_room in counts.per_query.items()
        },
    }
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


# Measure ---------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def expected(meta: dict, q: str, room: str | None) -> int:
    readable = {r["slug"] for r in meta["rooms"] if r["searcher_reads"] and (room is None or r["slug"] == room)}
    return sum(n for slug, n in meta["matches"][q].items() if slug in readable)


def check(meta: dict, q: str, room: str | None, found: list[dict], has_more: bool, limit: int) -> str | None:
    """What is wrong with a result, if anything."""
    want = expected(meta, q, room)
    if len(found) != min(want, limit) or has_more != (want > limit):
        return f"{len(found)} messages, has_more={has_more}; expected {min(want, limit)} of {want}"
    readable = {r["slug"] for r in meta["rooms"] if r["searcher_reads"]}
    for message in found:
        if message["room"] not in readable or (room and message["room"] != room):
            return f"message {message['id']} from room {message['room']}"
        if q.casefold() not in message["body"].casefold() or message.get("deleted"):
            return f"message {message['id']} does not match: {message['body']!r}"
    ids = [m["id"] for m in found]
    if ids != sorted(ids, reverse=True):
        return "not newest first"
    return None


def measure(meta_path: Path, runs: int, output: Path) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    from chat.search import search_messages

    meta = json.loads(meta_path.read_text())
    user = User.objects.get(username=data.SEARCHER)
    limit = 20
    cases = [("all rooms", None), (f"room {data.BIG_ROOM}", data.BIG_ROOM)]
    results = []
    for case, room in cases:
        rows = []
        for name, q in data.QUERIES:
            started = time.perf_counter()
            found, has_more = search_messages(user=user, q=q, room=room, limit=limit)
            first_ms = (time.perf_counter() - started) * 1000
            rows.append(
                {
                    "query": name,
                    "q": q,
                    "expected": expected(meta, q, room),
                    "returned": len(found),
                    "error": check(meta, q, room, found, has_more, limit),
                    "first_ms": round(first_ms, 2),
                    "times_ms": [],
                }
            )
        for _ in range(runs):
            for row in rows:
                started = time.perf_counter()
                search_messages(user=user, q=row["q"], room=room, limit=limit)
                row["times_ms"].append((time.perf_counter() - started) * 1000)
        for row in rows:
            times = row.pop("times_ms")
            row.update(
                {
                    f"{key}_ms": round(percentile(times, p), 2)
                    for key, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
                }
            )
        results.append({"case": case, "room": room, "queries": rows})
    output.write_text(json.dumps({"vendor": connection.vendor, "runs": runs, "limit": limit, "cases": results}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["load", "measure"])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--meta", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", type=Path)
    options = parser.parse_args()
    setup()
    if options.command == "load":
        load(options.messages, options.meta)
    else:
        measure(options.meta, options.runs, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
