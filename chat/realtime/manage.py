"""The socket's room-management frames: `members`, `invite`, `remove_member`, `part`,
`room_update` and `archive`. A mixin of ChatConsumer, so each frame type stays one method
(`on_<type>`); the services check who may do what (chat.selectors.room_manage_check), exactly as
for the HTTP API (chat.api.manage).

None of them needs the room joined: a manager may invite people to a room from any page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import selectors, services
from chat.realtime import protocol
from chat.realtime.protocol import Frame
from chat.selectors import readable_room, room_named, user_named

if TYPE_CHECKING:
    from channels.generic.websocket import AsyncWebsocketConsumer

    _Base = AsyncWebsocketConsumer
else:
    _Base = object


@database_sync_to_async
def _members(*, slug: str, user: User) -> list[dict[str, Any]]:
    return selectors.room_members(room=readable_room(slug=slug, user=user))


@database_sync_to_async
def _invite(*, slug: str, user: User, username: str) -> list[dict[str, Any]]:
    room = room_named(slug=slug)
    services.member_invite(room=room, user=user_named(username, slug=slug), by=user)
    return selectors.room_members(room=room)


@database_sync_to_async
def _remove(*, slug: str, user: User, username: str) -> list[dict[str, Any]]:
    room = room_named(slug=slug)
    services.member_remove(room=room, user=user_named(username, slug=slug), by=user)
    return selectors.room_members(room=room)


@database_sync_to_async
def _part(*, slug: str, user: User) -> None:
    services.room_part(room=readable_room(slug=slug, user=user), user=user)


@database_sync_to_async
def _update(*, slug: str, user: User, name: str | None, topic: str | None, private: bool | None) -> dict[str, Any]:
    room = services.room_update(room=room_named(slug=slug), by=user, name=name, topic=topic, private=private)
    return selectors.room_info(room=room)


@database_sync_to_async
def _archive(*, slug: str, user: User) -> None:
    services.room_archive_by(room=room_named(slug=slug), by=user)


class RoomManagement(_Base):
    """ChatConsumer's room-management frames (see the module's docstring)."""

    user: User
    slugs: dict[str, int]
    if TYPE_CHECKING:

        async def _unsubscribe(self, room_id: int) -> None: ...  # ChatConsumer's

    async def on_members(self, frame: Frame) -> None:
        members = await _members(slug=frame["room"], user=self.user)
        await self.send(protocol.encode("members", frame.ref, room=frame["room"], members=members))

    async def on_invite(self, frame: Frame) -> None:
        members = await _invite(slug=frame["room"], user=self.user, username=frame["user"])
        await self.send(protocol.encode("members", frame.ref, room=frame["room"], members=members))

    async def on_remove_member(self, frame: Frame) -> None:
        members = await _remove(slug=frame["room"], user=self.user, username=frame["user"])
        await self.send(protocol.encode("members", frame.ref, room=frame["room"], members=members))

    async def on_part(self, frame: Frame) -> None:
        slug = frame["room"]
        await _part(slug=slug, user=self.user)
        room_id = self.slugs.get(slug)
        if room_id is not None:  # this socket's copy of the user's `room_closed` is this reply
            await self._unsubscribe(room_id)
        await self.send(protocol.encode("left", frame.ref, room=slug))

    async def on_room_update(self, frame: Frame) -> None:
        info = await _update(
            slug=frame["room"], user=self.user, name=frame["name"], topic=frame["topic"], private=frame["private"]
        )
        await self.send(protocol.encode("room_updated", frame.ref, room=frame["room"], info=info))

    async def on_archive(self, frame: Frame) -> None:
        await _archive(slug=frame["room"], user=self.user)
        await self.send(protocol.encode("room_closed", frame.ref, room=frame["room"], reason="archived"))
