"""Message search: a case-insensitive substring of any script (`会议` finds `明天的会议改到三点`),
in the rooms the caller may read now, newest first (docs/search.md).

One selector, `search_messages`, for both databases, each with its own index:

- PostgreSQL: a pg_trgm GIN index on UPPER(body) (migration 0009_search), which Django's
  `icontains` (`UPPER(body) LIKE UPPER('%q%')`) uses for a query of 3 characters or more. The
  database's LC_CTYPE must be a UTF-8 locale (C.UTF-8, en_US.UTF-8): under C, pg_trgm drops every
  non-ASCII character and a Chinese query cannot use the index.
- SQLite: an FTS5 table with the trigram tokenizer (`chat_message_fts`, external content on
  chat_message, kept by triggers; only live messages are in it), searched with MATCH for 3
  characters or more.

A query of 1 or 2 characters has no trigram: on either database it is a newest-first scan of the
readable rooms' messages, stopped as soon as a page is full (its cost is in docs/search.md).
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import checks
from django.db import connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode
from chat.models import PRIVATE_ACCESS, Ban, Membership, Message, Room
from chat.realtime.protocol import MAX_SEARCH_LENGTH, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, is_text
from chat.selectors import _MESSAGE_COLUMNS, message_wire, room_get_for

MAX_QUERY_LENGTH = MAX_SEARCH_LENGTH  # characters, after trimming
TRIGRAM = 3  # the shortest query an index answers; shorter ones scan (docs/search.md)

FTS_TABLE = "chat_message_fts"


def clean_query(q: str) -> str:
    """The query as searched: trimmed, 1 to MAX_QUERY_LENGTH characters of text; else bad_request."""
    if not is_text(q) or "\x00" in q:
        raise ChatError(ErrorCode.BAD_REQUEST, _("'q' is not valid text."))
    q = q.strip()
    if not q:
        raise ChatError(ErrorCode.BAD_REQUEST, _("'q' is empty: give the text to search for."))
    if len(q) > MAX_QUERY_LENGTH:
        raise ChatError(ErrorCode.BAD_REQUEST, _("'q' is longer than %(max)d characters.") % {"max": MAX_QUERY_LENGTH})
    return q


def readable_room_ids(*, user: User) -> "QuerySet[Room, Any]":
    """The ids of the rooms `user` may read now, as a subquery: the rules of
    selectors.room_access_check for every room at once (public rooms, private rooms and direct
    conversations they hold access to; not archived; not banned from)."""
    access = Membership.objects.filter(PRIVATE_ACCESS, user=user).values("room_id")
    return (
        Room.objects.filter(archived=False)
        .filter(Q(private=False) | Q(pk__in=access))
        .exclude(pk__in=Ban.objects.filter(user=user).values("room_id"))
        .values("pk")
    )


def fts_quote(q: str) -> str:
    """`q` as one FTS5 string (a phrase): in double quotes, its own double quotes doubled. With the
    trigram tokenizer a phrase matches where its characters appear together: a substring."""
    return '"' + q.replace('"', '""') + '"'


def _matching(q: str) -> QuerySet[Message]:
    messages = Message.objects.filter(deleted=False)
    if len(q) >= TRIGRAM and connection.vendor == "sqlite":
        # The trigram index's candidates; the body is not checked again (a phrase of trigrams is the substring).
        return messages.filter(
            pk__in=RawSQL(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", (fts_quote(q),))
        )
    # PostgreSQL (the trigram index serves 3+ characters), and short queries on SQLite: Django
    # escapes % _ and \ in `q` for LIKE. SQLite's LIKE folds the case of ASCII letters only.
    return messages.filter(body__icontains=q)


def search_messages(
    *,
    user: User,
    q: str,
    room: str | None = None,
    author: str | None = None,
    before: int | None = None,
    limit: int = SEARCH_DEFAULT_LIMIT,
) -> tuple[list[dict[str, Any]], bool]:
    """Messages whose text contains `q` (any case), in the rooms `user` may read now, newest first
    (by id), at most `limit` (1..SEARCH_MAX_LIMIT); and whether there are more (ask again with
    before=<the last id>). `room` (a slug) narrows to one room, and raises the ChatError of any
    door to it the user may not pass; `author` (a username) to their messages (nobody: none)."""
    q = clean_query(q)
    if not 1 <= limit <= SEARCH_MAX_LIMIT:
        raise ChatError(ErrorCode.BAD_REQUEST, _("'limit' must be 1 to %(max)d.") % {"max": SEARCH_MAX_LIMIT})
    messages = _matching(q)
    if room is not None:
        messages = messages.filter(room=room_get_for(slug=room, user=user))
    else:
        messages = messages.filter(room_id__in=readable_room_ids(user=user))
    if author is not None:
        author_id = get_user_model().objects.filter(username=author).values_list("pk", flat=True).first()
        if author_id is None:
            return [], False
        messages = messages.filter(author_id=author_id)
    if len(q) >= TRIGRAM:
        if before is not None:
            messages = messages.filter(pk__lt=before)
        rows = _page(messages, count=limit + 1)
    else:
        rows = _scan_newest_first(messages, before=before, count=limit + 1)
    return [message_wire(row, room_slug=row["room__slug"]) for row in rows[:limit]], len(rows) > limit


def _page(messages: QuerySet[Message], *, count: int) -> list[dict[str, Any]]:
    return list(messages.order_by("-pk").values(*_MESSAGE_COLUMNS, "room__slug")[:count])


SHORT_SCAN_SLICE = 20_000  # message ids in the first slice a short query reads; each next one doubles


def _scan_newest_first(messages: QuerySet[Message], *, before: int | None, count: int) -> list[dict[str, Any]]:
    """The newest `count` of `messages` (which no index narrows), read in slices of ids from the
    newest back, each twice the last, until `count` are found or the oldest message is passed: a
    common short text reads only the newest slice, a rare one all messages once at most (in
    log2(messages / SHORT_SCAN_SLICE) + 1 queries). A database left to plan `LIKE '%xy%' ORDER BY
    id DESC LIMIT n` alone may read and sort the whole table even when the newest rows match."""
    newest = Message.objects.order_by("-pk").values_list("pk", flat=True).first()
    if newest is None:
        return []
    high = newest + 1 if before is None else min(before, newest + 1)  # ids below `high` are left to read
    oldest = Message.objects.order_by("pk").values_list("pk", flat=True).first() or 0
    rows: list[dict[str, Any]] = []
    width = SHORT_SCAN_SLICE
    while len(rows) < count and high > oldest:
        low = max(oldest, high - width)
        rows += _page(messages.filter(pk__gte=low, pk__lt=high), count=count - len(rows))
        high, width = low, width * 2
    return rows


# SQLite's index -----------------------------------------------------------------------------

_SQLITE_TRIGGERS = {
    f"{FTS_TABLE}_insert": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_insert AFTER INSERT ON chat_message WHEN NOT new.deleted
        BEGIN
            INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body);
        END""",
    f"{FTS_TABLE}_delete": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_delete AFTER DELETE ON chat_message WHEN NOT old.deleted
        BEGIN
            INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body);
        END""",
    # An edit replaces the indexed text; a deletion (deleted=True) takes the message out.
    f"{FTS_TABLE}_update": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_update AFTER UPDATE OF body, deleted ON chat_message
        BEGIN
            INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) SELECT 'delete', old.id, old.body WHERE NOT old.deleted;
            INSERT INTO {FTS_TABLE}(rowid, body) SELECT new.id, new.body WHERE NOT new.deleted;
        END""",
}


def sqlite_install(db: BaseDatabaseWrapper) -> bool:
    """Create SQLite's search index where it is missing (the migration; and after any migration,
    since SQLite's way of altering chat_message, a new table copied into, drops its triggers);
    fill it again if a part was missing. Whether anything was made."""
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE name = %s OR (type = 'trigger' AND name LIKE %s)",
            [FTS_TABLE, f"{FTS_TABLE}_%"],
        )
        present = {name for (name,) in cursor.fetchall()}
        if present >= {FTS_TABLE, *_SQLITE_TRIGGERS}:
            return False
        if FTS_TABLE not in present:
            cursor.execute(
                f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
                "body, content='chat_message', content_rowid='id', tokenize='trigram case_sensitive 0')"
            )
        for sql in _SQLITE_TRIGGERS.values():
            cursor.execute(sql)
        cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('delete-all')")
        cursor.execute(f"INSERT INTO {FTS_TABLE}(rowid, body) SELECT id, body FROM chat_message WHERE NOT deleted")
    return True


def sqlite_ensure(*, using: str) -> bool:
    """After `migrate` on SQLite, once 0009_search is applied: make what is missing of the index."""
    db = connections[using]
    if db.vendor != "sqlite" or ("chat", "0009_search") not in MigrationRecorder(db).applied_migrations():
        return False
    with transaction.atomic(using=using):
        return sqlite_install(db)


def sqlite_uninstall(db: BaseDatabaseWrapper) -> None:
    with db.cursor() as cursor:
        for name in _SQLITE_TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")


# PostgreSQL's index ---------------------------------------------------------------------------

PG_INDEX = "message_body_trgm"


def postgres_install(db: BaseDatabaseWrapper) -> None:
    """pg_trgm (a trusted extension: the database's owner may create it) and the GIN index on
    UPPER(body), the expression Django's icontains compares. Built CONCURRENTLY: sends go on
    while a large table is indexed."""
    with db.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {PG_INDEX} ON chat_message USING gin (UPPER(body) gin_trgm_ops)"
        )


def check_locale(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """(A system check, run by `migrate` and `check --database default`) Warn when a PostgreSQL
    database's LC_CTYPE is C or POSIX: pg_trgm then drops non-ASCII characters, and a search in
    Chinese reads every message instead of the index."""
    found: list[checks.CheckMessage] = []
    for alias in databases or []:
        db = connections[alias]
        if db.vendor != "postgresql":
            continue
        with db.cursor() as cursor:
            cursor.execute("SELECT datctype FROM pg_database WHERE datname = current_database()")
            row = cursor.fetchone()
        if row is not None and row[0] in ("C", "POSIX"):
            found.append(
                checks.Warning(
                    f"Database '{alias}' has LC_CTYPE {row[0]}: search's trigram index leaves out every "
                    "non-ASCII character, so a search in Chinese (or any non-Latin script) reads every message.",
                    hint="Create the database with a UTF-8 locale, e.g. LC_CTYPE 'C.UTF-8' (docs/search.md).",
                    id="chat.W001",
                )
            )
    return found


def postgres_uninstall(db: BaseDatabaseWrapper) -> None:
    # The extension stays: other things may use it, and it costs nothing unused.
    with db.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {PG_INDEX}")
