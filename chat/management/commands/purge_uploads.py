"""`python manage.py purge_uploads`: remove the uploads no message took within
CHAT_UPLOAD_PENDING_HOURS, with their stored files (chat/files.py). The workers already run it every
CHAT_UPLOAD_PURGE_INTERVAL_SECONDS; with that set to 0, run this from cron instead. Running it
while the workers do is safe."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.files import uploads_purge


class Command(BaseCommand):
    help = "Remove uploads that no message took within CHAT_UPLOAD_PENDING_HOURS, and their files."

    def handle(self, *args: Any, **options: Any) -> None:
        removed = uploads_purge()
        self.stdout.write(f"Removed {removed} pending upload(s).")
