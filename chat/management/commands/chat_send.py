"""`python manage.py chat_send ROOM "text" [--as USER]`: post a message from the server side
(batch jobs, alerts). It is stored and numbered like any message, and broadcast to open sockets
through the channel layer: live on every worker when REDIS_URL is set; with the in-process
layer (no REDIS_URL) it is stored, and open pages get it at their next catch-up."""

import sys
from argparse import ArgumentParser
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from chat import services
from chat.errors import ChatError
from chat.models import Room

SYSTEM_USER = "system"


class Command(BaseCommand):
    help = "Post a message into a room, stored and broadcast like any other."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("room", help="the room's slug, e.g. lobby")
        parser.add_argument("text", help="the message; '-' reads it from standard input")
        parser.add_argument(
            "--as",
            dest="username",
            default=SYSTEM_USER,
            help=f"the author (default: '{SYSTEM_USER}', an account made on first use that cannot log in)",
        )

    def handle(self, *args: Any, room: str, text: str, username: str, **options: Any) -> None:
        if text == "-":
            stdin: TextIO = options["stdin"] if "stdin" in options else sys.stdin
            text = stdin.read().rstrip("\n")
        room_obj = Room.objects.filter(slug=room).first()
        if room_obj is None:
            raise CommandError(f"There is no room '{room}'.")
        author = self._author(username)
        try:
            wire, _created = services.message_send(room=room_obj, author=author, body=text)
        except ChatError as error:
            raise CommandError(f"{author.get_username()} cannot post in '{room}': {error.detail}") from None
        self.stdout.write(f"Sent message #{wire['seq']} to {room} as {author.get_username()}.")

    def _author(self, username: str) -> User:
        model = get_user_model()
        if username == SYSTEM_USER:
            system, created = model.objects.get_or_create(username=SYSTEM_USER)
            if created:
                system.set_unusable_password()
                system.save(update_fields=["password"])
            return system
        user = model.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user '{username}'.")
        if not user.is_active:
            raise CommandError(f"The user '{username}' is deactivated.")
        return user
