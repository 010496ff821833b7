"""A real SMTP server for tests (aiosmtpd), on a free loopback port, that keeps what it receives.

Not a test module. Usage:

    with SmtpServer() as smtp:
        env = smtp.env()  # EMAIL_HOST and EMAIL_PORT for a worker under test
        ...
        email = smtp.wait_for(lambda m: m["To"] == "alice@example.com")
        email.get_content()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.daphne_server import free_port


class _Keep:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        await asyncio.sleep(self.server.delay)
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        with self.server.lock:
            self.server.received.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    """`delay`: seconds it takes to accept each message, as a slow server would."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.controller = Controller(_Keep(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()

    def env(self) -> dict[str, str]:
        return {
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.port),
            "DEFAULT_FROM_EMAIL": "Chat <chat@example.com>",
        }

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.received)

    def wait_for(self, match: Callable[[EmailMessage], bool], timeout: float = 20.0) -> EmailMessage:
        """The first received message `match` accepts, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if match(message):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no matching email in {timeout} s; received: {[m['Subject'] for m in self.messages()]}")
