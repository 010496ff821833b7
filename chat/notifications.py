"""Notification emails: a direct message or a mention (chat/mentions.py) still unread CHAT_EMAIL_NOTIFY_DELAY_SECONDS after it was
sent gets its recipient one email, which lists everything waiting for them at that moment (a
digest, not an email per message). A message is in one email at most: EmailNotice keeps, per user
and room, the newest message emailed about.

Every worker runs `send_notification_emails` every CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS (a thread,
started by server/worker.py), and `manage.py send_notification_emails` runs it once. Several may
run at once, in one process (`make run`) or many (the cluster, docker compose): for each user the
decision and its EmailNotice rows are made in one transaction that holds the user's
EmailPreference row locked (`select_for_update(skip_locked=True)` on PostgreSQL: a worker that
finds it locked moves on; SQLite's IMMEDIATE transactions queue them instead), so the second to
look sees the first one's notices and sends nothing. The email goes out inside that transaction:
if the SMTP server refuses it, nothing is marked and the next run tries again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.mail import EmailMessage
from django.db import close_old_connections, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

from chat.models import (
    PRIVATE_ACCESS,
    Ban,
    EmailNotice,
    EmailPreference,
    Membership,
    Mention,
    Message,
    NotifyLevel,
    Room,
    RoomNotify,
)

logger = logging.getLogger(__name__)

EMAIL_OFF_SALT = "chat.notifications.email-off"
PREVIEW_LENGTH = 300  # characters of each message quoted in the email
MAX_LISTED = 20  # messages quoted in one email; the rest are counted


def _worth_an_email(user: User) -> Q:
    """Which of a user's unread messages earn an email, as a filter on Message: those of a direct
    conversation, and those that mention the user."""
    return Q(room__kind=Room.Kind.DIRECT) | Q(Exists(Mention.objects.filter(message=OuterRef("pk"), user=user)))


def _membership_worth_an_email() -> Q:
    """The same, as a filter on the Membership of a user who may have such messages: which users a
    run looks at."""
    mentioned = Mention.objects.filter(user=OuterRef("user"), room=OuterRef("room"), seq__gt=OuterRef("last_read_seq"))
    return Q(room__kind=Room.Kind.DIRECT) | Q(Exists(mentioned))


def waiting_unread_for(*, user: User) -> QuerySet[Message]:
    """The messages waiting for `user`: worth an email, unread (after their read marker in the
    room), by someone else, not deleted, in a room that is not archived nor muted by the user, and
    in no email yet.
    Oldest first. Thread replies are left out, as they are of unread counts: the read marker
    follows the room's flow, so a reply read in its thread would still look unread."""
    emailed = EmailNotice.objects.filter(user=user, room=OuterRef("room"), seq__gte=OuterRef("seq"))
    return (
        Message.objects.filter(room__memberships__user=user, room__memberships__last_read_seq__lt=F("seq"))
        .filter(_worth_an_email(user), deleted=False, reply_to__isnull=True, room__archived=False)
        .exclude(author=user)
        .filter(
            Q(room__private=False) | Exists(Membership.objects.filter(PRIVATE_ACCESS, room=OuterRef("room"), user=user))
        )
        .exclude(Exists(Ban.objects.filter(user=user, room=OuterRef("room"))))
        .exclude(Exists(RoomNotify.objects.filter(user=user, room=OuterRef("room"), level=NotifyLevel.MUTE)))
        .exclude(Exists(emailed))
        .select_related("room", "author")
        .order_by("created_at", "pk")
    )


def candidate_user_ids() -> list[int]:
    """Users who may have something waiting: an unread message in a room worth an email, an
    address, and notification emails on. Cheap: no message is read here."""
    memberships = (
        Membership.objects.filter(_membership_worth_an_email(), room__archived=False)
        .filter(Q(room__private=False) | PRIVATE_ACCESS)  # who may still read the room
        .filter(last_read_seq__lt=F("room__last_seq"), user__is_active=True)
        .exclude(user__email="")
        .exclude(user__email_preference__notify=False)
        .exclude(
            Exists(RoomNotify.objects.filter(user=OuterRef("user"), room=OuterRef("room"), level=NotifyLevel.MUTE))
        )
    )
    return sorted(set(memberships.values_list("user_id", flat=True)))


def email_off_token(user: User) -> str:
    return signing.dumps(user.pk, salt=EMAIL_OFF_SALT, compress=True)


def user_for_email_off_token(token: str) -> User | None:
    """The user a one-click "turn these emails off" link was made for; None if it was tampered with."""
    try:
        user_id = signing.loads(token, salt=EMAIL_OFF_SALT)
    except signing.BadSignature:
        return None
    return User.objects.filter(pk=user_id).first() if isinstance(user_id, int) else None


def email_off_url(user: User) -> str:
    return settings.CHAT_SITE_URL + reverse("email_off", args=[email_off_token(user)])


def _room_title(room: Room, user: User) -> str:
    if not room.is_direct:
        return f"#{room.slug}"
    others = room.memberships.exclude(user=user).select_related("user").order_by("user__username")
    return ", ".join(membership.user.get_username() for membership in others)


def notification_email(*, user: User, waiting: list[Message]) -> EmailMessage:
    rooms: dict[int, Room] = {}
    for message in waiting:
        rooms.setdefault(message.room_id, message.room)
    count = len(waiting)
    subject = ngettext(
        "%(count)d message is waiting for you on Channels Chat",
        "%(count)d messages are waiting for you on Channels Chat",
        count,
    ) % {"count": count}
    entries = [
        {
            "author": message.author.get_username() if message.author else "system",
            "room": _room_title(rooms[message.room_id], user),
            "url": settings.CHAT_SITE_URL + reverse("chat:room", args=[message.room.slug]),
            "body": message.body if len(message.body) <= PREVIEW_LENGTH else message.body[:PREVIEW_LENGTH] + "…",
            "sent_at": message.created_at,
        }
        for message in waiting[:MAX_LISTED]
    ]
    off_url = email_off_url(user)
    context = {
        "user": user,
        "entries": entries,
        "more": max(0, count - MAX_LISTED),
        "off_url": off_url,
        "settings_url": settings.CHAT_SITE_URL + reverse("account_settings"),
    }
    return EmailMessage(
        subject=subject,
        body=render_to_string("email/notification.txt", context),
        to=[user.email],
        # One click in the mail program's own "Unsubscribe" (RFC 8058) posts to the same link.
        headers={"List-Unsubscribe": f"<{off_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


def _notify_one(user_id: int, cutoff: datetime, now: datetime) -> bool:
    """Email one user what waits for them, if the oldest of it is older than `cutoff`. True if sent."""
    user = User.objects.get(pk=user_id)
    if not waiting_unread_for(user=user).filter(created_at__lte=cutoff).exists():
        return False  # nothing due: no lock, no write (most runs end here)
    EmailPreference.objects.get_or_create(user_id=user_id)  # the row to lock
    with transaction.atomic():
        preference = (
            EmailPreference.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(user_id=user_id)
            .first()
        )
        if preference is None:  # another worker holds it: that one decides
            return False
        user = preference.user
        if not (preference.notify and user.is_active and user.email):
            return False
        waiting = list(waiting_unread_for(user=user))
        if not waiting or waiting[0].created_at > cutoff:
            return False
        notification_email(user=user, waiting=waiting).send()
        newest: dict[int, int] = {}
        for message in waiting:
            newest[message.room_id] = max(newest.get(message.room_id, 0), message.seq)
        for room_id, seq in newest.items():
            EmailNotice.objects.update_or_create(user=user, room_id=room_id, defaults={"seq": seq, "sent_at": now})
    return True


def send_notification_emails(*, now: datetime | None = None) -> int:
    """One run: email every user whose oldest waiting message is older than the delay. Returns
    how many emails were sent. A failure for one user (the SMTP server refusing) is logged and
    leaves that user for the next run."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.CHAT_EMAIL_NOTIFY_DELAY_SECONDS)
    sent = 0
    for user_id in candidate_user_ids():
        try:
            sent += _notify_one(user_id, cutoff, now)
        except Exception:
            logger.exception("Notification email to user %s failed; the next run tries again", user_id)
    return sent


class NotificationRunner(threading.Thread):
    """Runs send_notification_emails every CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS in a worker. A thread
    of its own: it blocks on the database and the SMTP server, which the worker's event loop must
    not."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="chat-notification-emails", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                sent = send_notification_emails()
                if sent:
                    logger.info("Sent %s notification email(s)", sent)
            except Exception:
                logger.exception("The notification email run failed")
            finally:
                close_old_connections()

    def stop(self) -> None:
        self.stopping.set()


def start_runner() -> NotificationRunner | None:
    """Start this process's runner, unless CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS is 0."""
    interval = settings.CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS
    if not interval:
        return None
    runner = NotificationRunner(interval)
    runner.start()
    return runner
