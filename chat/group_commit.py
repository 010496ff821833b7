"""Group commit: the sends waiting in a worker for one room, stored in one transaction.

`chat.realtime.batcher` gathers them (a lone send is a batch of one, stored at once); this stores
them with a fixed number of statements however many there are, where `services.message_send`
spends about seven on each:

1. one UPDATE of the room's counters for all of them, which returns the room's state and takes
   the room's lock (the row lock on PostgreSQL, the write lock on SQLite) as `services._advance`
   does; the room's state it returns (archived, private) is checked under that lock;
2. one query for every author's access (banned; holding a private room's access), also under the
   lock, as `services._advance` checks it: a ban committed while the batch waited for the lock
   refuses its author's send (and `services.ban_create` takes the same lock, so a ban and a batch
   never overlap);
3. one multi-row INSERT;
4. one UPDATE of the authors' read markers (each to their own newest message);
5. mentions, only for a message whose text mentions someone (`chat.mentions`);
6. on commit, every `message` and `activity` frame in seq order, in one hop to the event loop.

What `services.message_send` promises still holds for each send: seqs and revs gapless (a send
refused under the lock gives its numbers back before anything is inserted), a `client_id` its
author already used in the room returns the first message (within the batch by comparison; against
stored rows through the unique constraint: on that IntegrityError the whole batch rolls back and is
stored one send at a time by `services.message_send`, where the first one won), every message
announced only after the commit. A send refused on its own (too large, empty, banned, not a member)
gets its own ChatError and the others are stored; so does one whose preparation failed (an
internal error, logged), or, stored one at a time, whose own transaction failed. Replies in threads
take `services.message_send`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, PositiveBigIntegerField, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from chat import events, formatting, mentions, services, unread
from chat.errors import ChatError, ErrorCode
from chat.models import PRIVATE_ACCESS, Ban, Membership, Message, Room
from chat.selectors import access_refusal, message_to_wire

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewMessage:
    author: User
    body: str
    client_id: str | None = None


# Each send's outcome: (the message as on the wire, created), or the refusal its sender gets.
Outcome = tuple[dict[str, Any], bool] | ChatError

# Digits an id may take on the wire, counted before the insert gives the real one.
_ID_ALLOWANCE = 20

_NOT_STORED = "The server could not store this message; try again."


def messages_send(*, room: Room, sends: Sequence[NewMessage], outbox: list[events.Send] | None = None) -> list[Outcome]:
    """Store `sends` (in this order: their seqs follow it) in `room` (a key: pk and slug are
    enough); one outcome per send, in the same order. Raises only what is not one send's fault
    (DatabaseError): then nothing was stored."""
    outcomes: list[Outcome | None] = [None] * len(sends)
    candidates: list[tuple[int, User, Message]] = []
    first: dict[tuple[int, str], int] = {}  # (author, client_id) -> the batch's first send with it
    copies: dict[int, int] = {}
    for index, send in enumerate(sends):
        if send.client_id is not None:
            key = (send.author.pk, send.client_id)
            if key in first:
                copies[index] = first[key]
                continue
            first[key] = index
        try:
            services._check_body(send.body, room=room)
            message = _fitting(room=room, send=send)
            mentions.mentioned_names(html=message.html)  # read again in the transaction: fails here, not there
        except ChatError as error:
            outcomes[index] = error
            continue
        except Exception:  # a bug in rendering this one message: its sender hears it, the others are stored
            logger.exception("Preparing a message of user %s in room %s failed", send.author.pk, room.slug)
            outcomes[index] = ChatError(ErrorCode.INTERNAL, _NOT_STORED, room=room.slug)
            continue
        candidates.append((index, send.author, message))
    if candidates:
        try:
            outcomes_by_index = _store(room=room, candidates=candidates, outbox=outbox)
        except IntegrityError:  # a client_id already stored (or racing in from elsewhere)
            outcomes_by_index = {index: _one(room=room, send=sends[index]) for index, _, _ in candidates}
        for index, outcome in outcomes_by_index.items():
            outcomes[index] = outcome
    for index, original in copies.items():
        copied = outcomes[original]
        outcomes[index] = (copied[0], False) if isinstance(copied, tuple) else copied
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]  # every slot is filled above


def _one(*, room: Room, send: NewMessage) -> Outcome:
    """One send in its own transaction: its refusal, or its own failure (its author deleted meanwhile
    fails the insert at commit), is its outcome alone, as the sends before it are already stored."""
    try:
        return services.message_send(room=room, author=send.author, body=send.body, client_id=send.client_id)
    except ChatError as error:
        return error
    except DatabaseError as error:
        logger.warning("Storing a message of user %s in room %s failed: %s", send.author.pk, room.slug, error)
        return ChatError(ErrorCode.INTERNAL, _NOT_STORED, room=room.slug)


def _fitting(*, room: Room, send: NewMessage) -> Message:
    """The message to insert, with its HTML, if it fits in a frame (as services._fitting_wire:
    kept as plain text when only that fits, refused when nothing does). Checked before the insert,
    so that a refusal costs no seq."""
    message = Message(
        room=room,
        author=send.author,
        body=send.body,
        html=formatting.render(send.body),
        client_id=send.client_id,
        seq=0,
        rev=0,
        created_at=timezone.now(),
    )
    budget = services._message_budget() - _ID_ALLOWANCE
    if services._wire_bytes(message_to_wire(message, room_slug=room.slug)) <= budget:
        return message
    message.html = formatting.plain(send.body)
    if services._wire_bytes(message_to_wire(message, room_slug=room.slug)) > budget:
        raise ChatError(ErrorCode.TOO_LARGE, "This message is too large to send: shorten it.", room=room.slug)
    return message


def _access(*, room_id: int, author_ids: set[int]) -> dict[int, tuple[bool, bool]]:
    """{author id: (member, banned)} in one query: `member` holds a private room's access."""
    rows = (
        User.objects.filter(pk__in=author_ids)
        .annotate(
            member=Exists(Membership.objects.filter(PRIVATE_ACCESS, room_id=room_id, user=OuterRef("pk"))),
            banned=Exists(Ban.objects.filter(room_id=room_id, user=OuterRef("pk"))),
        )
        .values_list("pk", "member", "banned")
    )
    return {pk: (member, banned) for pk, member, banned in rows}


# Access let through, per (room, author), in this process: (when the query allowed it, member).
# An author who sent in the last ACCESS_RECHECK_SECONDS and was allowed then is not asked about
# again: in a worker where each batch holds a send or two, that query was a third of the store's
# CPU (py-spy under W1). A ban or a removal reaches the author's sockets as an event at once
# (chat.access_changed closes the room on them); if that event is lost, the next query, at most
# this long after, refuses. Refusals are never kept: they are asked about every time.
ACCESS_RECHECK_SECONDS = 1.0
_allowed: dict[tuple[int, int], tuple[float, bool]] = {}


def forget_access() -> None:
    """(Tests) forget every author let through, as a new process would."""
    _allowed.clear()


def _access_checked(*, room: Room, author_ids: set[int]) -> dict[int, tuple[bool, bool]]:
    """`_access` for the authors not let through in `room` (the fresh row, under its lock) in the
    last ACCESS_RECHECK_SECONDS; the others as they were then."""
    now = time.monotonic()
    known: dict[int, tuple[bool, bool]] = {}
    for author_id in author_ids:
        seen = _allowed.get((room.pk, author_id))
        if seen is not None and now - seen[0] < ACCESS_RECHECK_SECONDS:
            if access_refusal(room=room, member=seen[1], banned=False) is None:
                known[author_id] = (seen[1], False)
    asked = author_ids - known.keys()
    if asked:
        answers = _access(room_id=room.pk, author_ids=asked)
        known.update(answers)
        if len(_allowed) > 10_000:  # long-gone senders: keep the map to the recent ones
            for key in [key for key, (at, _) in _allowed.items() if now - at >= ACCESS_RECHECK_SECONDS]:
                del _allowed[key]
        for author_id, (member, banned) in answers.items():
            if not banned and access_refusal(room=room, member=member, banned=False) is None:
                _allowed[(room.pk, author_id)] = (now, member)
    return known


_ROOM_STATE = ("last_seq", "last_rev", "archived", "private", "kind", "slug", "name", "topic")


def _advance(*, room_id: int, count: int) -> Room | None:
    """Take `count` seqs and revs of the room in one statement, which also locks its row until
    the transaction ends: the room as it is after the update (None if it is gone)."""
    if connection.vendor in ("postgresql", "sqlite"):  # both have UPDATE ... RETURNING
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(Room._meta.db_table)} SET {quote('last_seq')} = {quote('last_seq')} + %s, "
                f"{quote('last_rev')} = {quote('last_rev')} + %s WHERE {quote('id')} = %s "
                f"RETURNING {', '.join(quote(column) for column in _ROOM_STATE)}",
                [count, count, room_id],
            )
            row = cursor.fetchone()
        return None if row is None else Room(pk=room_id, **dict(zip(_ROOM_STATE, row, strict=True)))
    if not Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + count, last_rev=F("last_rev") + count):
        return None
    return Room.objects.get(pk=room_id)


def _store(
    *, room: Room, candidates: list[tuple[int, User, Message]], outbox: list[events.Send] | None
) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    with transaction.atomic():
        fresh = _advance(room_id=room.pk, count=len(candidates))
        if fresh is None:
            error = ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
            return {index: error for index, _, _ in candidates}
        # Under the room's lock, so that a ban (or a lost invitation) committed while this batch
        # waited for it refuses the send, as services._advance does: for an author not let
        # through in the last ACCESS_RECHECK_SECONDS (whose sockets the ban's event reaches).
        access = _access_checked(room=fresh, author_ids={author.pk for _, author, _ in candidates})
        stored = []
        for index, author, message in candidates:
            if author.pk not in access:  # the account was deleted: its insert would fail the whole batch
                outcomes[index] = ChatError(ErrorCode.FORBIDDEN, "Your account no longer exists.", room=room.slug)
                continue
            member, banned = access[author.pk]
            refusal = access_refusal(room=fresh, member=member, banned=banned)
            if refusal is None:
                stored.append((index, author, message))
            else:
                outcomes[index] = refusal
        if not stored:
            transaction.set_rollback(True)  # the numbers taken are given back
            return outcomes
        refused = len(candidates) - len(stored)
        if refused:  # give back what the refused sends took: still under the lock, so no gap
            Room.objects.filter(pk=fresh.pk).update(last_seq=F("last_seq") - refused, last_rev=F("last_rev") - refused)
            fresh.last_seq, fresh.last_rev = fresh.last_seq - refused, fresh.last_rev - refused
        first_seq, first_rev = fresh.last_seq - len(stored) + 1, fresh.last_rev - len(stored) + 1
        messages = []
        for offset, (_, _, message) in enumerate(stored):
            message.room = fresh
            message.seq, message.rev = first_seq + offset, first_rev + offset
            messages.append(message)
        Message.objects.bulk_create(messages)
        _mark_read(room=fresh, authors=[(author.pk, message.seq) for _, author, message in stored])
        direct = services._direct_members(room=fresh) if fresh.is_direct else None
        announced = []
        for index, _, message in stored:
            wire = message_to_wire(message, room_slug=fresh.slug)
            outcomes[index] = (wire, True)
            names = mentions.mentioned_names(html=message.html)
            mentioned = mentions.mentions_record(message=message) if names else []
            announced.append((wire, unread.activity(message=wire, kind="message", mentions=mentioned)))
        events.messages_created_on_commit(room_id=fresh.pk, items=announced, outbox=outbox)
        if direct is not None:
            for (wire, _), (_, author, _) in zip(announced, stored, strict=True):
                services._announce_direct(room=fresh, message=wire, author=author, members=direct)
    return outcomes


def _mark_read(*, room: Room, authors: list[tuple[int, int]]) -> None:
    """Writing in a room means having read it: each author's read marker moves to their newest
    message of the batch (`authors`: (author id, seq) in seq order), never back, in one statement."""
    newest = dict(authors)
    markers = Membership.objects.filter(room=room, user_id__in=newest, last_read_seq__lt=max(newest.values()))
    if len(newest) == 1:
        markers.update(last_read_seq=max(newest.values()))
        return
    own = Case(
        *(When(user_id=user_id, then=Value(seq)) for user_id, seq in newest.items()),
        output_field=PositiveBigIntegerField(),
    )
    markers.update(last_read_seq=Greatest(F("last_read_seq"), own))
