"""A backend that stops answering, for in-process tests of what a socket then sees."""

from __future__ import annotations

from typing import Literal

import pytest
import redis.exceptions
from channels.layers import InMemoryChannelLayer
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError


def take_down(monkeypatch: pytest.MonkeyPatch, backend: Literal["redis", "database"]) -> None:
    """Redis: the worker's fan-out cannot open its channel (what the first socket's group
    subscription needs). The database: a session cannot be read (what the handshake needs)."""
    if backend == "redis":

        async def redis_down(self: InMemoryChannelLayer, prefix: str = "specific.") -> str:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

        monkeypatch.setattr(InMemoryChannelLayer, "new_channel", redis_down)
    else:

        def database_down(self: SessionStore) -> dict[str, object]:
            raise OperationalError("connection failed: Connection refused")

        monkeypatch.setattr(SessionStore, "load", database_down)
