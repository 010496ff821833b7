"""Who a message mentions: `@username` in its text, found when the message is stored or edited.

The rules are the page's (`markMentions` in chat/static/chat/chat.js): a mention is `@` and a
username, not preceded by a letter, digit or one of `_ . + - @`, and never inside a link or code
(the text of the message's HTML outside `<a>`, `<code>` and `<pre>`). It counts only for an active
account, matched without regard to case, that may read the room, and never for the author.

    mentioned_names(html=...)                       the names written, in order (no database)
    mentions_record(message=...)                    store who a message mentions; returns them
    mentions_of(message_id=...)                     who a stored message mentions
    mentions_after(user=..., room=..., seq=...)     a user's mentions in a room after a seq
    mention_counts(user=..., room_ids=[...])        per room: mentions after the user's read marker

Each mention is a `Mention` row (message, user, room, seq), indexed by (user, room, seq).
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower

from chat.models import PRIVATE_ACCESS, Ban, Membership, Mention, Message, Room

# As chat.js's MENTION_PATTERN: Python's \w is its [\p{L}\p{N}_].
MENTION_PATTERN = re.compile(r"(?<![\w.+\-@])@(\w(?:[\w.+\-@]*\w)?)")
MAX_MENTIONS = 50  # names looked up per message: a message naming everyone is not a broadcast tool
_SKIPPED_TAGS = {"a", "code", "pre"}


class _TextOutsideCode(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside how many <a>, <code>, <pre>
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        # Each text node on its own, as the page matches them: a mention never spans two.
        self.parts.append("" if self.depth else data)


def mentioned_names(*, html: str) -> list[str]:
    """The usernames written as mentions in a message's HTML, in order, each once."""
    parser = _TextOutsideCode()
    parser.feed(html)
    parser.close()
    names: dict[str, None] = {}
    for part in parser.parts:
        for match in MENTION_PATTERN.finditer(part):
            names.setdefault(match.group(1), None)
    return list(names)[:MAX_MENTIONS]


def _readers(*, room: Room, names: list[str], author_id: int | None) -> list[tuple[int, str]]:
    """(id, username) of the accounts named (any case) that may read the room, the author aside."""
    if not names:
        return []
    users = (
        get_user_model()
        .objects.annotate(lower=Lower("username"))
        .filter(lower__in=[name.lower() for name in names], is_active=True)
        .exclude(pk__in=Ban.objects.filter(room=room).values("user_id"))
    )
    if author_id is not None:
        users = users.exclude(pk=author_id)
    if room.private:
        users = users.filter(pk__in=Membership.objects.filter(PRIVATE_ACCESS, room=room).values("user_id"))
    return list(users.order_by("username").values_list("pk", "username"))


def mentions_record(*, message: Message) -> list[str]:
    """Store who `message` (saved, with its room) mentions, replacing what an earlier version of it
    mentioned; the usernames, sorted. Call it in the transaction that stores or edits the message."""
    readers = (
        []
        if message.deleted
        else _readers(room=message.room, names=mentioned_names(html=message.html), author_id=message.author_id)
    )
    Mention.objects.filter(message=message).exclude(user_id__in=[pk for pk, _ in readers]).delete()
    Mention.objects.bulk_create(
        [Mention(message=message, user_id=pk, room_id=message.room_id, seq=message.seq) for pk, _ in readers],
        ignore_conflicts=True,
    )
    return [name for _, name in readers]


def mentions_of(*, message_id: int) -> list[str]:
    """The usernames a stored message mentions, sorted."""
    rows = Mention.objects.filter(message_id=message_id).values_list("user__username", flat=True)
    return sorted(name for name in rows if name)


def mentions_after(*, user: User, room: Room, seq: int) -> QuerySet[Mention]:
    """The user's mentions in the room in messages after `seq` that are not deleted, oldest first
    (with their messages: `select_related("message")`)."""
    return (
        Mention.objects.filter(user=user, room=room, seq__gt=seq, message__deleted=False)
        .select_related("message")
        .order_by("seq")
    )


@dataclass(frozen=True)
class MentionCount:
    total: int  # mentions after the read marker, in messages not deleted
    in_threads: int  # of which in thread replies


def mention_counts(*, user: User, room_ids: list[int]) -> dict[int, MentionCount]:
    """For each of the rooms (those without any are left out): the user's mentions after their
    read marker there. One query."""
    marker = Membership.objects.filter(room=OuterRef("room_id"), user=user).values("last_read_seq")[:1]
    rows = (
        Mention.objects.filter(user=user, room_id__in=room_ids, message__deleted=False)
        .filter(seq__gt=Coalesce(Subquery(marker), Value(0)))
        .values("room_id")
        .annotate(total=Count("pk"), in_threads=Count("pk", filter=Q(message__reply_to__isnull=False)))
    )
    return {row["room_id"]: MentionCount(total=row["total"], in_threads=row["in_threads"]) for row in rows}
