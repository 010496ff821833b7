"""Demo users and rooms. Idempotent: run it as often as you like."""

from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from chat import services
from chat.models import Membership, Room

DEMO_PASSWORD = "chatdemo"  # demo credentials, documented as such in the README
USERS = ["alice", "bob", "carol"]


class RoomSpec(TypedDict):
    slug: str
    name: str
    topic: str
    private: bool


ROOMS: list[RoomSpec] = [
    {"slug": "lobby", "name": "Lobby", "topic": "Say hello.", "private": False},
    {"slug": "random", "name": "Random", "topic": "Anything goes.", "private": False},
    {"slug": "staff", "name": "Staff", "topic": "Members only.", "private": True},
]
STAFF_MEMBERS = ["alice", "admin"]


class Command(BaseCommand):
    help = "Create the demo users (alice, bob, carol, admin; password 'chatdemo') and rooms (lobby, random, staff)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        model = get_user_model()
        users: dict[str, User] = {}
        for username in USERS:
            users[username] = self._user(model, username, superuser=False)
        users["admin"] = self._user(model, "admin", superuser=True)

        for spec in ROOMS:
            room = Room.objects.filter(slug=spec["slug"]).first()
            if room is None:
                room = services.room_create(**spec, created_by=users["admin"])
                self.stdout.write(f"Created room {room.slug}")
        staff = Room.objects.get(slug="staff")
        for username in STAFF_MEMBERS:
            role = Membership.Role.MODERATOR if username == "admin" else Membership.Role.MEMBER
            services.membership_add(room=staff, user=users[username], role=role)
        self.stdout.write(
            self.style.SUCCESS("Demo data ready: log in as alice, bob, carol or admin, password 'chatdemo'.")
        )

    def _user(self, model: type[User], username: str, *, superuser: bool) -> User:
        user = model.objects.filter(username=username).first()
        if user is None:
            if superuser:
                user = model.objects.create_superuser(username, f"{username}@example.com", DEMO_PASSWORD)
            else:
                user = model.objects.create_user(username, f"{username}@example.com", DEMO_PASSWORD)
            self.stdout.write(f"Created user {username}")
        return user
