"""Group commit, the worker's side: the sends waiting in this worker for one room are stored
together (chat.group_commit), in one transaction in the worker's one sync thread.

Per room, the first send that finds no store under way starts one (a task); it takes every send
queued for the room at that moment. Sends that arrive while it runs wait for the next, which the
same task starts as soon as the first commits. Nothing waits on a timer: a lone send in an idle
worker is stored at once, and batches grow only when the database is the bottleneck, which is
when they pay. Each sender gets its own outcome (its message, or its own refusal) only after the
commit, and the frames were published before that (services' on-commit hooks run in the commit).
"""

from __future__ import annotations

import asyncio
import copy
import weakref
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import events, group_commit
from chat.errors import ChatError
from chat.models import Room


@database_sync_to_async
def _store(
    *, room_id: int, slug: str, sends: list[group_commit.NewMessage], outbox: list[events.Send]
) -> list[group_commit.Outcome]:
    return group_commit.messages_send(room=Room(pk=room_id, slug=slug), sends=sends, outbox=outbox)


@dataclass(slots=True)
class _Waiting:
    send: group_commit.NewMessage
    future: asyncio.Future[dict[str, Any]]


class SendBatcher:
    def __init__(self) -> None:
        self._queues: dict[int, list[_Waiting]] = {}  # room id -> sends not yet taken by a store
        self._stores: dict[int, asyncio.Task[None]] = {}  # room id -> its store under way
        self.batches = 0  # stores run, and the sends they held (for the tests and the docs' figures)
        self.sends = 0

    async def send(self, *, room_id: int, slug: str, user: User, body: str, client_id: str | None) -> dict[str, Any]:
        """Store a message with the room's other waiting sends: the message as on the wire, once
        committed (the first one, for a client_id already used). Raises the send's own ChatError,
        or what kept the whole batch from being stored (a DatabaseError)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(group_commit.NewMessage(author=user, body=body, client_id=client_id), loop.create_future())
        self._queues.setdefault(room_id, []).append(waiting)
        if room_id not in self._stores:
            self._stores[room_id] = loop.create_task(self._run(room_id, slug), name=f"chat-store-{room_id}")
        return await waiting.future

    async def _run(self, room_id: int, slug: str) -> None:
        try:
            while batch := self._queues.pop(room_id, None):
                self.batches += 1
                self.sends += len(batch)
                outbox: list[events.Send] = []  # the batch's frames, once it committed
                try:
                    outcomes = await _store(
                        room_id=room_id, slug=slug, sends=[waiting.send for waiting in batch], outbox=outbox
                    )
                    # Announced from here rather than from the sync thread, which would wait for the
                    # channel layer; before the acks, as the single path does (its on-commit hooks
                    # run before it returns).
                    await events.publish(outbox)
                    for waiting, outcome in zip(batch, outcomes, strict=True):
                        if waiting.future.done():  # its socket went away meanwhile
                            continue
                        if isinstance(outcome, ChatError):
                            waiting.future.set_exception(_own(outcome))
                        else:
                            waiting.future.set_result(outcome[0])
                except BaseException as error:  # nothing (or not all) of the batch answered: each sender hears why
                    for waiting in batch:
                        if waiting.future.done():
                            continue
                        if isinstance(error, asyncio.CancelledError):
                            waiting.future.cancel()
                        else:
                            waiting.future.set_exception(_own(error))
                    if not isinstance(error, Exception):  # cancelled, or the process is exiting
                        raise
        finally:
            self._stores.pop(room_id, None)
            for waiting in self._queues.pop(room_id, []):  # left only when the task was cancelled
                waiting.future.cancel()


def _own(error: BaseException) -> BaseException:
    """A copy of `error` for one sender: each awaiting task raises its own (a shared exception
    object gathers every raiser's traceback, and its fields are the consumer's to fill in)."""
    if isinstance(error, ChatError):
        own: BaseException = ChatError(error.code, error.detail, room=error.room)
    else:
        try:
            own = copy.copy(error)
        except Exception:  # an exception that cannot be rebuilt from its args: shared, as it was
            return error
    own.__cause__, own.__context__ = error.__cause__, error.__context__
    return own.with_traceback(error.__traceback__)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SendBatcher] = weakref.WeakKeyDictionary()


def get_batcher() -> SendBatcher:
    """This process' batcher for the running event loop (Daphne has one; tests start several)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = SendBatcher()
    return batcher
