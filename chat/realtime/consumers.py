"""The chat WebSocket: transport hooks that validate, call services and selectors, and reply.

One socket multiplexes any number of rooms. Every reply to a request carries its `ref`.
Nothing a client sends closes the socket, except abuse (4429) or an oversized frame (4009).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.db import DatabaseError
from django.utils.translation import gettext
from redis.exceptions import RedisError

from chat import events, search, selectors, services, unread
from chat.errors import ChatError
from chat.models import Room
from chat.ops import logs, metrics
from chat.realtime import protocol
from chat.realtime.batcher import get_batcher
from chat.realtime.codes import CloseCode, ErrorCode
from chat.realtime.daphne import daphne_protocol, is_open, protocol_backlog, transport_backlog, write_prepared
from chat.realtime.fanout import Fanout, PreparedFrame, get_fanout
from chat.realtime.limits import SocketLimits, StrikeWindow, TokenBucket, get_user_limits
from chat.realtime.manage import RoomManagement
from chat.realtime.presence import Presence, get_presence
from chat.realtime.presence.announce import get_announcer
from chat.realtime.protocol import Frame
from chat.realtime.session_watch import get_session_watch
from chat.throttle import address_key

if TYPE_CHECKING:
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from channels.consumer import _ChannelScope  # the stub's name for a consumer's scope

logger = logging.getLogger(__name__)

# Clean-ups of ended sockets still under way (kept referenced until done: see ChatConsumer._release).
_leaving: set[asyncio.Task[None]] = set()

DATABASE_DOWN = "The database is not answering; try again in a moment."


# The ORM, bridged once per function ----------------------------------------------------------


@database_sync_to_async
def _session_state(session: SessionBase, user_id: int | None = None) -> str:
    if not session.session_key:
        return selectors.SessionState.ENDED
    return selectors.session_state(session=session, user_id=user_id)


@database_sync_to_async
def _enter(*, user: User, slug: str) -> tuple[Room, dict[str, Any]]:
    room = services.room_enter(slug=slug, user=user)
    return room, selectors.room_info(room=room, viewer=user.username)


@database_sync_to_async
def _catch_up(*, room: Room, since: int | None, rev: int | None) -> tuple[list[dict[str, Any]], bool, int]:
    """The messages a join returns, whether that was all, and the room's rev, read before them
    (with the room, in _enter, before subscribing): every later change then either is among them
    or arrives live (the socket is subscribed)."""
    current_rev = room.last_rev
    if since is None and rev is None:
        return selectors.messages_latest(room=room), True, current_rev
    if rev is None:  # by seq, oldest first, as the contract has it for `since` alone
        messages, complete = selectors.messages_since(room=room, since=since or 0)
    else:
        messages, complete = selectors.messages_changed(room=room, rev=rev, since=since)
    return messages, complete, current_rev


def _room_key(room_id: int, slug: str) -> Room:
    # The services re-read the room row under its lock; a key is all they need from us.
    return Room(pk=room_id, slug=slug)


@database_sync_to_async
def _store_message(
    *,
    room_id: int,
    slug: str,
    user: User,
    body: str,
    client_id: str | None,
    reply_to: int | None,
    attachments: list[int],
) -> dict[str, Any]:
    wire, _created = services.message_send(
        room=_room_key(room_id, slug),
        author=user,
        body=body,
        client_id=client_id,
        reply_to=reply_to,
        attachments=attachments,
    )
    return wire


@database_sync_to_async
def _edit(*, room_id: int, slug: str, user: User, message_id: int, body: str, skip: str) -> dict[str, Any]:
    return services.message_edit(
        room=_room_key(room_id, slug), author=user, message_id=message_id, body=body, skip=skip
    )


@database_sync_to_async
def _delete(*, room_id: int, slug: str, user: User, message_id: int, skip: str) -> dict[str, Any]:
    # One's own message, or anyone's for the room's moderators and creator.
    return services.message_remove(room=_room_key(room_id, slug), user=user, message_id=message_id, skip=skip)


@database_sync_to_async
def _react(*, room_id: int, slug: str, user: User, message_id: int, emoji: str, on: bool, skip: str) -> dict[str, Any]:
    wire, _changed = services.reaction_set(
        room=_room_key(room_id, slug), user=user, message_id=message_id, emoji=emoji, on=on, skip=skip
    )
    return wire


def _readable_room(*, room_id: int, user: User) -> Room:
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        raise ChatError(ErrorCode.NOT_FOUND, "That room no longer exists.")
    selectors.room_access_check(room=room, user=user)
    return room


@database_sync_to_async
def _history(*, room_id: int, user: User, before: int | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    room = _readable_room(room_id=room_id, user=user)
    return selectors.messages_before(room=room, before=before, limit=limit)


@database_sync_to_async
def _history_after(*, room_id: int, user: User, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    room = _readable_room(room_id=room_id, user=user)
    return selectors.messages_after(room=room, after=after, limit=limit)


@database_sync_to_async
def _history_around(
    *, room_id: int, user: User, message_id: int, limit: int
) -> tuple[list[dict[str, Any]], bool, bool]:
    room = _readable_room(room_id=room_id, user=user)
    return selectors.messages_around(room=room, message_id=message_id, limit=limit)


@database_sync_to_async
def _thread(
    *, room_id: int, user: User, root_id: int, before: int | None, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    room = _readable_room(room_id=room_id, user=user)
    return selectors.thread_page(room=room, root_id=root_id, before=before, limit=limit)


@database_sync_to_async
def _search(
    *, user: User, q: str, room: str | None, author: str | None, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    return search.search_messages(user=user, q=q, room=room, author=author, before=before, limit=limit)


@database_sync_to_async
def _direct(*, user: User, usernames: list[str]) -> tuple[str, dict[str, Any]]:
    room, _created = services.direct_open(user=user, usernames=usernames)
    return room.slug, selectors.room_info(room=room, viewer=user.username)


@database_sync_to_async
def _read(*, room_id: int, user: User, seq: int) -> None:
    services.read_mark(room=Room(pk=room_id), user=user, seq=seq)


@database_sync_to_async
def _watch_targets(*, user: User, slugs: list[str] | None) -> dict[int, str]:
    return unread.watch_targets(user=user, slugs=slugs)


@database_sync_to_async
def _room_counts(*, user: User, room_ids: list[int]) -> list[dict[str, Any]]:
    return unread.room_counts(user=user, room_ids=room_ids)


@database_sync_to_async
def _notify(*, user: User, slug: str, level: str) -> str:
    return unread.notify_set(user=user, room=selectors.room_get_for(slug=slug, user=user), level=level)


@database_sync_to_async
def _counters(room_ids: list[int]) -> dict[int, tuple[int, int]]:
    return selectors.room_counters(room_ids=room_ids)


# Channels gives a consumer a channel of its own (and a task reading it) on the layer that its
# `channel_layer_alias` names in CHANNEL_LAYERS; an alias that names no layer gives it none. A chat
# socket needs none: the worker's fan-out subscribes to its groups and hands it their events.
NO_CHANNEL_LAYER = "none"


class ChatConsumer(RoomManagement, AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER  # see chat.realtime.fanout
    # Until connect() has run (and for a handshake refused before it), a socket holds nothing.
    released = False
    user_id: int | None = None
    user_group: str | None = None
    # Set by connect():
    connection_id: str  # on every log line of this socket
    user: User  # a logged-in account once connect() lets the socket stay open
    session: SessionBase | None
    rooms: dict[int, str]  # room id -> slug, the rooms this socket has joined
    watched: dict[int, str]  # room id -> slug, the rooms whose activity it gets (chat.unread)
    slugs: dict[str, int]
    session_key: str | None
    token_id: int | None  # set when a bearer token opened it
    closing: bool
    bucket: TokenBucket
    strikes: StrikeWindow
    presence: Presence
    fanout: Fanout
    tasks: set[asyncio.Task[None]] | None  # made by the first spawn
    held: list[tuple[int, PreparedFrame]] | None  # room frames held for a reply
    protocol: WebSocketServerProtocol | None  # Daphne's, for room frames (push_frame)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels (4.2+) runs close_old_connections() through sync_to_async before every
        # handler: a hop to the one sync thread for each event to each socket, so a message to a
        # room of 50 queued 50 hops behind the database writes. Here every ORM call goes through
        # database_sync_to_async, which closes stale connections itself, so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Transport hooks ---------------------------------------------------------------------------

    async def connect(self) -> None:
        # The scope as chat.realtime.middleware left it: with its own keys (token_id, ...).
        scope: Mapping[str, Any] = self.scope
        self.connection_id = logs.bind_connection()
        self.socket_id = f"socket.{secrets.token_hex(8)}"  # names this socket in presence and in `skip`
        user: Any = scope.get("user")  # a lazy account, or anonymous (or None): see the checks below
        self.user = user
        self.session = scope.get("session")
        self.rooms = {}
        self.watched = {}
        self.slugs = {}
        self.user_group = None
        self.session_key = None
        self.token_id = scope.get("token_id")
        self.user_id = None
        self.closing = False
        self.bucket = TokenBucket(rate=settings.CHAT_RATE_PER_SECOND, burst=settings.CHAT_RATE_BURST)
        self.strikes = StrikeWindow(limit=settings.CHAT_ABUSE_LIMIT)
        self.presence = get_presence()
        self.fanout = get_fanout()
        self.tasks = None
        self.held = None

        # Redis away: one PING raises before the accept, and chat.realtime.guard answers 4503.
        await self.presence.ready()
        await self.accept()
        self.protocol = daphne_protocol(self.base_send)  # room frames go straight to it (push_frame)
        metrics.ws_opened(self)
        if user is None or not user.is_authenticated:
            state = await _session_state(self.session) if self.session is not None else None
            inactive = state == selectors.SessionState.INACTIVE or scope.get("token_inactive", False)
            code = CloseCode.DEACTIVATED if inactive else CloseCode.SESSION_ENDED
            await self._close(code)
            return
        if self.token_id is None and self.session is not None:
            self.session_key = self.session.session_key
        if not get_user_limits().open(
            self.user.pk,
            self,
            max_sockets=settings.CHAT_MAX_SOCKETS_PER_USER,
            rate=settings.CHAT_USER_RATE_PER_SECOND,
            burst=settings.CHAT_USER_RATE_BURST,
        ):
            logger.info("User %s already holds %s sockets here", self.user.pk, settings.CHAT_MAX_SOCKETS_PER_USER)
            await self._close(CloseCode.TOO_MANY_SOCKETS)
            return
        self.user_id = self.user.pk
        self.user_group = events.user_group(self.user.pk)
        try:
            await self.fanout.add(self.user_group, self)
        except (RedisError, OSError) as error:  # as chat.realtime.guard does for a handshake not yet accepted
            logger.warning("WebSocket closed with %d: Redis is not answering (%s)", CloseCode.UNAVAILABLE, error)
            self.user_group = None
            await self._close(CloseCode.UNAVAILABLE)
            return
        get_session_watch().add(self)
        logger.info("WebSocket opened by user %s", self.user_id)

    async def __call__(self, scope: _ChannelScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Whatever ended the socket: after a crash in a handler (or a reply that could not be
            # sent) Daphne closes it with 1011 and never calls disconnect(); a cancelled task or a
            # worker's shutdown ends here too. Its presence, per-user slot, fan-out membership and
            # metrics are released all the same.
            await self._release(CloseCode.INTERNAL_ERROR)

    async def disconnect(self, code: int) -> None:
        await self._release(code)

    async def _release(self, code: int) -> None:
        """Give back everything this socket holds, once. What needs no network goes first and at
        once (the per-user slot, the session watch, the fan-out's hold on this socket, metrics);
        then leaving the groups and presence, shielded, so a cancelled task (Daphne giving up on
        the application) does not cut it short, and each step on its own, so one that fails
        (Redis away) does not keep the others from running."""
        if self.released:
            return
        self.released = True
        self.closing = True
        logger.info("WebSocket closed with code %s", metrics.ws_closed(self, code))
        get_session_watch().discard(self)
        if self.user_id is not None:
            get_user_limits().close(self.user_id, self)
        rooms = getattr(self, "rooms", {})
        left = list(rooms.items())
        rooms.clear()
        getattr(self, "slugs", {}).clear()
        groups = [events.room_group(room_id) for room_id, _ in left]
        groups += [events.activity_group(room_id) for room_id in getattr(self, "watched", {})]
        getattr(self, "watched", {}).clear()
        if self.user_group:
            groups.append(self.user_group)
            self.user_group = None
        for group in groups:
            self.fanout.forget(group, self)
        if groups:
            task = asyncio.ensure_future(self._leave(groups, left))
            _leaving.add(task)
            task.add_done_callback(_leaving.discard)
            await asyncio.shield(task)

    async def _leave(self, groups: list[str], rooms: list[tuple[int, str]]) -> None:
        for group in groups:
            try:
                await self.fanout.discard(group, self)
            except Exception:
                logger.warning("Could not leave the group %s cleanly", group, exc_info=True)
        for room_id, slug in rooms:
            try:
                await self._went_offline(room_id, slug)
            except Exception:  # Redis away: the presence entry lapses by itself (CHAT_PRESENCE_TTL)
                logger.warning("Could not leave room %s cleanly", room_id, exc_info=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Room frames that arrive while a request is handled wait for its reply, as they would in
        # this socket's own dispatch loop: a sender gets its `ack` before its message comes back.
        self.held = []
        try:
            await self.handle_frame(text_data, bytes_data)
        finally:
            held, self.held = self.held, None
            for room_id, frame in held:
                self.push_frame(room_id, frame)

    async def handle_frame(self, text_data: str | None, bytes_data: bytes | None) -> None:
        if self.closing:
            return
        if text_data is None:
            metrics.frame_received("binary")
            await self._refuse(ChatError(ErrorCode.BAD_REQUEST, "Binary frames are not supported: send JSON text."))
            return
        limit = settings.CHAT_MAX_FRAME_BYTES
        if len(text_data) * 4 > limit and len(text_data.encode("utf-8", "surrogatepass")) > limit:
            metrics.frame_received("oversized")
            await self._close(CloseCode.FRAME_TOO_LARGE)
            return
        try:
            frame: Frame | None = protocol.parse_frame(text_data)
            refusal = None
        except ChatError as error:
            frame, refusal = None, error
        ref = frame.ref if frame else refusal.ref if refusal else None
        metrics.frame_received(frame.type if frame else "invalid")
        if not self.bucket.take():
            room = frame.fields.get("room") if frame else None
            await self._refuse(ChatError(ErrorCode.RATE_LIMITED, "Too many frames: slow down.", room=room), ref)
            return
        if self.user_id is not None and not get_user_limits().take(self.user_id):
            room = frame.fields.get("room") if frame else None
            detail = "Too many frames from your account (all your open sockets together): slow down."
            await self._refuse(ChatError(ErrorCode.RATE_LIMITED, detail, room=room), ref)
            return
        if refusal is not None:
            await self._refuse(refusal, ref)
            return
        assert frame is not None  # parse_frame returns a frame or raises
        try:
            await getattr(self, f"on_{frame.type}")(frame)
        except ChatError as error:
            if error.room is None:
                error.room = frame.fields.get("room")
            await self._refuse(error, ref)
        except DatabaseError as error:
            # The database is down or restarting (bench/faults.py restarts it): say so, keep the
            # socket. Nothing was acked; a send retried with the same client_id is stored once.
            logger.warning("Frame %s from user %s: database error: %s", frame.type, self.user.pk, error)
            room = frame.fields.get("room")
            await self.send(protocol.error_frame(ChatError(ErrorCode.INTERNAL, DATABASE_DOWN, room=room), ref))
        except Exception:
            logger.exception("Frame %s from user %s failed", frame.type, self.user.pk)
            room = frame.fields.get("room")
            await self.send(
                protocol.error_frame(
                    ChatError(ErrorCode.INTERNAL, "The server could not do that; try again.", room=room), ref
                )
            )

    # Frames ------------------------------------------------------------------------------------

    async def on_join(self, frame: Frame) -> None:
        limit = settings.CHAT_MAX_ROOMS_PER_SOCKET
        if frame["room"] not in self.slugs and len(self.rooms) >= limit:
            raise ChatError(
                ErrorCode.FORBIDDEN, f"This socket is in {limit} rooms, the most it may join: leave one first."
            )
        room, info = await _enter(user=self.user, slug=frame["room"])
        came_online = False
        if room.pk not in self.rooms:
            # Subscribe before reading: a message committed in between then arrives live as well
            # (the client drops the duplicate by seq) instead of falling between the two.
            await self.fanout.add(events.room_group(room.pk), self)
            self.rooms[room.pk] = room.slug
            self.slugs[room.slug] = room.pk
            came_online = await self.presence.add(
                room_id=room.pk, room_slug=room.slug, username=self.user.username, socket_id=self.socket_id
            )
        messages, complete, rev = await _catch_up(room=room, since=frame["since"], rev=frame["rev"])
        users, users_complete, online, version = await self._presence_list(room.pk)
        envelope = {
            "room": room.slug,
            "info": info,
            "presence": users,
            "presence_complete": users_complete,
            "presence_version": version,
            "online": online,
            "rev": rev,
        }
        budget = self._frame_budget("joined", frame.ref, complete=False, **envelope)
        if frame["since"] is None and frame["rev"] is None:  # the latest ones; older ones are history's
            messages, _ = protocol.fit_messages(messages, budget=budget, keep="newest")
        else:  # oldest first: the client asks for the rest by joining again with since (or rev)
            messages, fitted = protocol.fit_messages(messages, budget=budget, keep="oldest")
            complete = complete and fitted
        await self.send(protocol.encode("joined", frame.ref, messages=messages, complete=complete, **envelope))
        if came_online:  # the joiner has the list in `joined`
            await get_announcer().changed(
                self.presence,
                room_id=room.pk,
                room_slug=room.slug,
                joined=[self.user.username],
                skip_socket=self.socket_id,
            )

    async def _presence_list(self, room_id: int) -> tuple[list[str], bool, int, int]:
        """`joined.presence`, `.presence_complete`, `.online` and `.presence_version`, read at
        once: the whole sorted list while the room has at most CHAT_PRESENCE_LIST_MAX users online;
        above that, this user first, then the first names in sorted order, CHAT_PRESENCE_LIST_MAX
        names in all (the client asks for the names after the last one with `online`)."""
        limit = settings.CHAT_PRESENCE_LIST_MAX
        now = await self.presence.snapshot(room_id=room_id, limit=limit)
        if now.online <= limit:
            return now.names, True, now.online, now.version
        me = self.user.username
        others = [name for name in now.names if name != me][: limit - 1]
        return [me, *others], False, now.online, now.version

    async def on_online(self, frame: Frame) -> None:
        """A page of who is online in a joined room, sorted, after `after`."""
        slug = frame["room"]
        room_id = self._joined(slug)
        users, has_more = await self.presence.page(room_id=room_id, after=frame["after"], limit=frame["limit"])
        online = await self.presence.count(room_id=room_id)
        await self.send(protocol.encode("online", frame.ref, room=slug, users=users, has_more=has_more, online=online))

    async def on_leave(self, frame: Frame) -> None:
        room_id = self._joined(frame["room"])
        await self._unsubscribe(room_id)
        await self.send(protocol.encode("left", frame.ref, room=frame["room"]))

    async def on_send(self, frame: Frame) -> None:
        started = metrics.clock()
        slug = frame["room"]
        room_id = self._joined(slug)
        attachments = frame["attachments"] or []
        if frame["reply_to"] is None and not attachments:  # stored with the room's other waiting sends (group commit)
            wire = await get_batcher().send(
                room_id=room_id, slug=slug, user=self.user, body=frame["body"], client_id=frame["client_id"]
            )
        else:
            wire = await _store_message(
                room_id=room_id,
                slug=slug,
                user=self.user,
                body=frame["body"],
                client_id=frame["client_id"],
                reply_to=frame["reply_to"],
                attachments=attachments,
            )
        ack = {"client_id": wire["client_id"], "id": wire["id"], "seq": wire["seq"], "rev": wire["rev"]}
        await self._reply_at_rev(room_id, wire["rev"], protocol.encode("ack", frame.ref, room=slug, **ack))
        metrics.observe_send_ack(started)

    async def on_edit(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        wire = await _edit(
            room_id=room_id,
            slug=slug,
            user=self.user,
            message_id=frame["id"],
            body=frame["body"],
            skip=self.socket_id,
        )
        reply = protocol.encode("message_edited", frame.ref, room=slug, message=wire, rev=wire["rev"])
        await self._reply_at_rev(room_id, wire["rev"], reply)

    async def on_delete(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        wire = await _delete(room_id=room_id, slug=slug, user=self.user, message_id=frame["id"], skip=self.socket_id)
        reply = protocol.encode(
            "message_deleted", frame.ref, room=slug, id=wire["id"], seq=wire["seq"], rev=wire["rev"], message=wire
        )
        await self._reply_at_rev(room_id, wire["rev"], reply)

    async def on_react(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        wire = await _react(
            room_id=room_id,
            slug=slug,
            user=self.user,
            message_id=frame["id"],
            emoji=frame["emoji"],
            on=frame["on"],
            skip=self.socket_id,
        )
        reply = protocol.encode("message_updated", frame.ref, room=slug, message=wire, rev=wire["rev"])
        await self._reply_at_rev(room_id, wire["rev"], reply)

    async def on_thread(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        root, messages, has_more = await _thread(
            room_id=room_id, user=self.user, root_id=frame["id"], before=frame["before"], limit=frame["limit"]
        )
        envelope = {"room": slug, "id": frame["id"], "root": root}
        budget = self._frame_budget("thread", frame.ref, has_more=False, **envelope)
        messages, fitted = protocol.fit_messages(messages, budget=budget, keep="newest")
        has_more = has_more or not fitted
        await self.send(protocol.encode("thread", frame.ref, messages=messages, has_more=has_more, **envelope))

    async def on_direct(self, frame: Frame) -> None:
        slug, info = await _direct(user=self.user, usernames=frame["users"])
        await self.send(protocol.encode("direct", frame.ref, room=slug, info=info))

    async def on_history(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        if sum(frame[name] is not None for name in ("before", "after", "around")) > 1:
            raise ChatError(ErrorCode.BAD_REQUEST, "Give at most one of 'before', 'after' and 'around'.", room=slug)
        if frame["after"] is not None or frame["around"] is not None:
            await self._history_forward(frame, slug=slug, room_id=room_id)
            return
        messages, has_more = await _history(
            room_id=room_id, user=self.user, before=frame["before"], limit=frame["limit"]
        )
        budget = self._frame_budget("history", frame.ref, room=slug, has_more=False)
        messages, fitted = protocol.fit_messages(messages, budget=budget, keep="newest")
        has_more = has_more or not fitted
        await self.send(protocol.encode("history", frame.ref, room=slug, messages=messages, has_more=has_more))

    async def _history_forward(self, frame: Frame, *, slug: str, room_id: int) -> None:
        """`history` with `after` (the page after a seq) or `around` (the page around a message):
        both say whether newer messages exist as well, in `has_more_after`."""
        budget = self._frame_budget("history", frame.ref, room=slug, has_more=False, has_more_after=False)
        if frame["around"] is not None:
            messages, has_more, has_more_after = await _history_around(
                room_id=room_id, user=self.user, message_id=frame["around"], limit=frame["limit"]
            )
            center = next(i for i, message in enumerate(messages) if message["id"] == frame["around"])
            messages, all_older, all_newer = protocol.fit_around(messages, center=center, budget=budget)
            has_more, has_more_after = has_more or not all_older, has_more_after or not all_newer
        else:
            messages, has_more_after = await _history_after(
                room_id=room_id, user=self.user, after=frame["after"], limit=frame["limit"]
            )
            messages, fitted = protocol.fit_messages(messages, budget=budget, keep="oldest")
            has_more, has_more_after = frame["after"] > 0, has_more_after or not fitted
        await self.send(
            protocol.encode(
                "history", frame.ref, room=slug, messages=messages, has_more=has_more, has_more_after=has_more_after
            )
        )

    async def on_search(self, frame: Frame) -> None:
        if not get_user_limits().take_search(self.user.pk, per_minute=settings.CHAT_SEARCH_PER_MINUTE):
            raise ChatError(ErrorCode.RATE_LIMITED, gettext("Too many searches: wait a moment before the next one."))
        q = search.clean_query(frame["q"])
        messages, has_more = await _search(
            user=self.user,
            q=q,
            room=frame["room"],
            author=frame["author"],
            before=frame["before"],
            limit=frame["limit"],
        )
        budget = self._frame_budget("search", frame.ref, q=q, has_more=False)
        messages, fitted = protocol.fit_messages(messages, budget=budget, keep="oldest")  # the newest, first
        await self.send(protocol.encode("search", frame.ref, q=q, messages=messages, has_more=has_more or not fitted))

    async def on_typing(self, frame: Frame) -> None:
        slug = frame["room"]
        room_id = self._joined(slug)
        if await self.presence.typing_allowed(
            room_id=room_id, user_id=self.user.pk, interval=settings.CHAT_TYPING_INTERVAL
        ):
            await events.typing(
                room_id=room_id, room_slug=slug, username=self.user.username, skip_socket=self.socket_id
            )

    async def on_read(self, frame: Frame) -> None:
        room_id = self._joined(frame["room"])
        await _read(room_id=room_id, user=self.user, seq=frame["seq"])

    async def on_watch(self, frame: Frame) -> None:
        """Follow the activity of rooms without joining them (their counts first, in `watching`).
        Subscribed before the counts are read: a message committed in between arrives as activity
        as well, and the client counts each seq once."""
        targets = await _watch_targets(user=self.user, slugs=frame["rooms"])
        fresh = {pk: slug for pk, slug in targets.items() if pk not in self.watched}
        if len(self.watched) + len(fresh) > unread.MAX_WATCHED_ROOMS:
            raise ChatError(ErrorCode.FORBIDDEN, f"A socket watches at most {unread.MAX_WATCHED_ROOMS} rooms.")
        for pk, slug in fresh.items():
            await self.fanout.add(events.activity_group(pk), self)
            self.watched[pk] = slug
        counts = await _room_counts(user=self.user, room_ids=list(targets))
        await self.send(protocol.encode("watching", frame.ref, rooms=counts))

    async def on_notify(self, frame: Frame) -> None:
        level = await _notify(user=self.user, slug=frame["room"], level=frame["level"])
        await self.send(protocol.encode("notify", frame.ref, room=frame["room"], level=level))

    async def on_ping(self, frame: Frame) -> None:
        # `seqs` and `revs` (additions to the contract): each joined room's newest seq and rev, so a
        # client notices a message or a change it missed even when nothing later arrives.
        counters = await _counters(list(self.rooms)) if self.rooms else {}
        joined = {self.rooms[pk]: pair for pk, pair in counters.items() if pk in self.rooms}
        seqs = {slug: seq for slug, (seq, _) in joined.items()}
        revs = {slug: rev for slug, (_, rev) in joined.items()}
        await self.send(protocol.encode("pong", frame.ref, seqs=seqs, revs=revs))

    # Channel-layer events (see chat.events) -----------------------------------------------------

    def push_frame(self, room_id: int, frame: PreparedFrame) -> None:
        """A room's frame from this worker's fan-out (chat.realtime.fanout): the bytes framed once for
        all sockets are written straight to Daphne's protocol, in order with every other write."""
        if self.closing or (room_id not in self.rooms and room_id not in self.watched):
            return
        if self.held is not None:
            self.held.append((room_id, frame))
            return
        protocol = self.protocol
        if protocol is None:  # not under Daphne (the tests' communicator): the ASGI way
            self.spawn(self.send(text_data=frame.text))
            return
        if not is_open(protocol):
            return
        backlog = protocol_backlog(protocol)
        if backlog is not None and backlog > settings.CHAT_MAX_SEND_BUFFER_BYTES:
            logger.warning("Closing a socket of user %s: %s bytes wait for it to read", self.user_id, backlog)
            self.spawn(self._close(CloseCode.SLOW_READER))
            self.closing = True
            return
        frame.count_sent()
        write_prepared(protocol, frame.prepared())

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a handler beside this socket's dispatch loop, keeping the task referenced."""
        task = asyncio.get_running_loop().create_task(coroutine)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def chat_user_frame(self, event: dict[str, Any]) -> None:
        if not self.closing:
            await self.send(event["frame"])

    async def chat_room_closed(self, event: dict[str, Any]) -> None:
        await self.room_lost(event["room_id"], event["reason"])

    async def chat_access_changed(self, event: dict[str, Any]) -> None:
        # A room became private: the worker re-checks all its sockets in a few queries (once,
        # however many sockets got this event).
        get_session_watch().recheck_access()

    async def room_lost(self, room_id: int, reason: str) -> None:
        """The user may no longer be in this room (see RoomClosed): leave it and say why; and stop
        watching it."""
        if self.watched.pop(room_id, None) is not None:
            await self.fanout.discard(events.activity_group(room_id), self)
        slug = self.rooms.get(room_id)
        if slug is None or self.closing:
            return
        try:
            await self._unsubscribe(room_id)
        except Exception:  # out of the room all the same (the fan-out let go first); presence lapses
            logger.warning("Could not leave room %s cleanly", room_id, exc_info=True)
        await self.send(protocol.encode("room_closed", room=slug, reason=reason))

    async def chat_session_ended(self, event: dict[str, Any]) -> None:
        if event["session_key"] == self.session_key:
            await self.session_ended()

    async def chat_token_revoked(self, event: dict[str, Any]) -> None:
        if event["token_id"] == self.token_id:
            await self.session_ended()

    async def chat_revalidate(self, event: dict[str, Any]) -> None:
        if self.closing:
            return
        if self.token_id is not None:  # the user changed: is the token still good (active user)?
            if not await database_sync_to_async(selectors.tokens_valid)(token_ids={self.token_id}):
                await self.session_ended()
            return
        if self.session is None:
            return
        try:
            state = await _session_state(self.session, self.user_id)
        except Exception:  # the database is away: the periodic sweep checks again later
            logger.exception("Could not re-check the session of user %s", self.user_id)
            return
        if state != selectors.SessionState.VALID:
            await self.session_ended()

    async def session_ended(self, *, deactivated: bool = False) -> None:
        """The session this socket was opened with no longer authenticates (see SessionWatch);
        `deactivated`: its account was already deactivated when it opened (4403, as a handshake)."""
        if not self.closing:
            await self._close(CloseCode.DEACTIVATED if deactivated else CloseCode.SESSION_ENDED)

    # Helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _frame_budget(frame_type: str, ref: str | None, **fields: Any) -> int:
        """Bytes left for `messages` in a frame of at most CHAT_MAX_FRAME_BYTES (Daphne's limit
        applies to what the server sends too)."""
        envelope = len(protocol.encode(frame_type, ref, messages=[], **fields).encode())
        return settings.CHAT_MAX_FRAME_BYTES - envelope - 16

    async def _reply_at_rev(self, room_id: int, rev: int, reply: str) -> None:
        """Send the reply to a change that took `rev`, after the room's frames held back meanwhile
        (see receive) that carry an earlier rev: the client sees the room's revs in order, and a
        sender still gets its `ack` before its own message."""
        held = self.held
        if held:
            earlier = 0
            for held_room, held_frame in held:
                if held_room == room_id and (held_frame.rev() or 0) >= rev:
                    break
                earlier += 1
            if earlier:
                self.held = None  # so that push_frame writes them now
                for held_room, held_frame in held[:earlier]:
                    self.push_frame(held_room, held_frame)
                self.held = held[earlier:]
        await self.send(reply)

    def _joined(self, slug: str) -> int:
        room_id = self.slugs.get(slug)
        if room_id is None:
            raise ChatError(ErrorCode.NOT_JOINED, f"Join '{slug}' first.", room=slug)
        return room_id

    async def _unsubscribe(self, room_id: int) -> None:
        slug = self.rooms.pop(room_id)
        self.slugs.pop(slug, None)
        await self.fanout.discard(events.room_group(room_id), self)
        await self._went_offline(room_id, slug)

    async def _went_offline(self, room_id: int, slug: str) -> None:
        """This socket left the room: update presence, and tell the room if the user is gone."""
        went_offline = await self.presence.remove(
            room_id=room_id, username=self.user.username, socket_id=self.socket_id
        )
        if went_offline:
            await get_announcer().changed(self.presence, room_id=room_id, room_slug=slug, left=[self.user.username])

    async def _refuse(self, error: ChatError, ref: str | None = None) -> None:
        await self.send(protocol.error_frame(error, ref))
        if error.code != ErrorCode.INTERNAL and self.strikes.add():
            await self._close(CloseCode.ABUSE)

    async def _close(self, code: CloseCode) -> None:
        self.closing = True
        metrics.ws_closing(self, code)
        await self.close(code=int(code))  # autobahn takes an int, not a subclass

    # AsyncWebsocketConsumer.send's signature already differs from AsyncConsumer.send's.
    async def send(  # type: ignore[override]
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        # What earlier frames left waiting (measured before this one is added, so one large
        # reply, such as a catch-up, does not count against a client that reads it).
        backlog = transport_backlog(self.base_send)
        if backlog is not None and backlog > settings.CHAT_MAX_SEND_BUFFER_BYTES:
            if not self.closing:
                # A client that does not read would make the worker hold everything sent to it.
                # It catches up from the database (join with since) when it connects again.
                logger.warning("Closing a socket of user %s: %s bytes wait for it to read", self.user_id, backlog)
                await self._close(CloseCode.SLOW_READER)
            return
        metrics.frame_sent(text_data)  # every frame to this socket: replies, errors, broadcasts
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)


# Per client address, on this worker: the echo sockets it holds open and a frame bucket they share
# (in-process, as the chat's per-user counts; each worker counts its own).
_echo_addresses: SocketLimits[str] = SocketLimits()  # the echo socket's, per client address


class EchoConsumer(AsyncWebsocketConsumer):
    """`/ws/echo/`: the classic first WebSocket example. Each text frame comes back prefixed with
    `Server: `; binary frames come back unchanged. It needs no login and no Origin, because it
    reads nothing and stores nothing; but it is open to anyone, so it has the chat socket's limits,
    counted per client address instead of per user (docs/security.md):

    - CHAT_ECHO_ENABLED off: the handshake is refused (HTTP 403), as for an unknown path;
    - at most CHAT_MAX_SOCKETS_PER_USER echo sockets per client address on a worker: the next is
      accepted, then closed with 4408, as a user's extra chat socket is;
    - each socket's frames pass the chat's token bucket (CHAT_RATE_PER_SECOND, bursts of
      CHAT_RATE_BURST) and the address's shared one (CHAT_USER_RATE_PER_SECOND / _BURST): a frame
      over the rate gets no echo and counts as a strike; more than CHAT_ABUSE_LIMIT strikes in
      60 s close the socket with 4429;
    - a frame whose echo would pass CHAT_MAX_FRAME_BYTES closes it with 4009 (Daphne drops a
      frame over 64 KiB before this, as everywhere)."""

    # Set by connect():
    counted: bool  # holds one of its address's sockets (_echo_addresses)
    closing: bool
    address: str  # what it is counted by (chat.throttle.address_key)
    bucket: TokenBucket
    strikes: StrikeWindow

    async def connect(self) -> None:
        self.counted = False
        self.closing = False
        if not settings.CHAT_ECHO_ENABLED:
            await self.close()  # before the accept: HTTP 403
            return
        client = self.scope.get("client")
        # The proxy's own, unless Daphne runs with --proxy-headers; an IPv6 client counts by its /64.
        self.address = address_key(client[0] if client else None)
        self.bucket = TokenBucket(rate=settings.CHAT_RATE_PER_SECOND, burst=settings.CHAT_RATE_BURST)
        self.strikes = StrikeWindow(limit=settings.CHAT_ABUSE_LIMIT)
        await self.accept()
        if not _echo_addresses.open(
            self.address,
            self,
            max_sockets=settings.CHAT_MAX_SOCKETS_PER_USER,
            rate=settings.CHAT_USER_RATE_PER_SECOND,
            burst=settings.CHAT_USER_RATE_BURST,
        ):
            logger.info(
                "Address %s already holds %s echo sockets here", self.address, settings.CHAT_MAX_SOCKETS_PER_USER
            )
            await self._close(CloseCode.TOO_MANY_SOCKETS)
            return
        self.counted = True

    async def __call__(self, scope: _ChannelScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # also when the socket ends without a disconnect (an error after the accept)
            self._release()

    async def disconnect(self, code: int) -> None:
        self.closing = True
        self._release()

    def _release(self) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            _echo_addresses.close(self.address, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        reply = "Server: " + text_data if text_data is not None else bytes_data or b""
        if len(reply.encode() if isinstance(reply, str) else reply) > settings.CHAT_MAX_FRAME_BYTES:
            await self._close(CloseCode.FRAME_TOO_LARGE)
            return
        if not self.bucket.take() or not _echo_addresses.take(self.address):
            if self.strikes.add():
                await self._close(CloseCode.ABUSE)
            return
        if isinstance(reply, str):
            await self.send(text_data=reply)
        else:
            await self.send(bytes_data=reply)

    async def _close(self, code: CloseCode) -> None:
        self.closing = True
        await self.close(code=int(code))  # autobahn takes an int, not a subclass
