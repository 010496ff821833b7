"""`python manage.py create_token USERNAME [--name N] [--expires-days D]`: a new API token.

The token is printed as the last line of the output, and this is the only time it is shown:
only its hash is stored. Each run makes a new token; older ones stay valid until revoked
(Django admin, "API tokens")."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat import services


class Command(BaseCommand):
    help = "Create an API token for a user; the token is the last line of the output."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for (default: 'created <date>')")
        parser.add_argument("--expires-days", type=int, help="expire after this many days (default: never)")

    def handle(self, *args: Any, username: str, name: str, expires_days: int | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user '{username}'.")
        if not user.is_active:
            raise CommandError(f"The user '{username}' is deactivated: a token for them would not work.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        name = name.strip() or f"created {timezone.now():%Y-%m-%d %H:%M} UTC"
        token, raw = services.token_create(user=user, name=name[:100], expires_at=expires_at)
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stdout.write(f"Token '{token.name}' for {username} ({expiry}). Keep it secret; it is not shown again:")
        self.stdout.write(raw)
