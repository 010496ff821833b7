"""`python manage.py send_notification_emails`: one run of the notification emails
(chat/notifications.py). The workers already run it every CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS; with
that set to 0, run this from cron (or a systemd timer) instead. Running it while the workers do is
safe: each waiting message is emailed once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.notifications import send_notification_emails


class Command(BaseCommand):
    help = "Email each user the direct messages that have waited unread longer than CHAT_EMAIL_NOTIFY_DELAY_SECONDS."

    def handle(self, *args: Any, **options: Any) -> None:
        sent = send_notification_emails()
        self.stdout.write(f"Sent {sent} notification email(s).")
