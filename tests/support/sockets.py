"""In-process sockets: the ASGI application through Channels' WebsocketCommunicator, with the
helpers the app tests share (send, expect, request by ref, join, drain, close code)."""

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chat.realtime.codes import CloseCode
from chat.realtime.protocol import MESSAGE_FIELDS, SERVER_FRAMES

ORIGIN = "http://testserver"


TEST_PASSWORD = "correct-horse-42"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def assert_frame_shape(frame: dict[str, Any]) -> None:
    """Every frame the server sends carries the fields the contract names, and so does every
    message in it."""
    assert frame["type"] in SERVER_FRAMES, frame
    missing = SERVER_FRAMES[frame["type"]] - frame.keys()
    assert not missing, f"{frame['type']} lacks {missing}"
    if frame["type"] == "presence":  # the whole list, or the changes with the count
        assert "users" in frame or ("online" in frame and ("joined" in frame or "left" in frame)), frame
    messages = frame.get("messages", []) + [frame[key] for key in ("message", "root") if key in frame]
    for message in messages:
        assert MESSAGE_FIELDS <= message.keys(), message


class Socket:
    """A WebsocketCommunicator with the helpers the tests need."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame_type: str | None = None, **fields: Any) -> None:
        if frame_type is not None:
            fields["type"] = frame_type
        await self.communicator.send_json_to(fields)

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, timeout: float = 3) -> dict[str, Any]:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        # Daphne encodes every text frame as UTF-8; one that cannot be (a lone surrogate) ends
        # the socket there, so a reply that would fail is a failure here too.
        output["text"].encode("utf-8")
        return json.loads(output["text"])

    async def expect(self, frame_type: str, timeout: float = 3, **match: Any) -> dict[str, Any]:
        """The next frame of `frame_type` (matching `match`), skipping presence/typing chatter."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = []
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                frame = await self.recv(timeout=max(remaining, 0.01))
            except TimeoutError:
                raise AssertionError(f"no {frame_type} {match} within {timeout}s; got {seen}") from None
            if frame["type"] == frame_type and all(frame.get(k) == v for k, v in match.items()):
                return frame
            if frame["type"] not in {"presence", "typing"}:
                seen.append(frame)
                if frame["type"] == "error" and frame_type != "error":
                    raise AssertionError(f"expected {frame_type}, got error {frame}")

    async def request(self, frame_type: str, **fields: Any) -> dict[str, Any]:
        """Send a frame with a ref and return the reply carrying that ref."""
        ref = f"r{id(fields)}-{frame_type}"
        await self.send(frame_type, ref=ref, **fields)
        deadline = asyncio.get_running_loop().time() + 3
        while True:
            frame = await self.recv(timeout=max(deadline - asyncio.get_running_loop().time(), 0.01))
            if frame.get("ref") == ref:
                return frame

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request("join", room=room, **fields)
        assert reply["type"] == "joined", reply
        return reply

    async def drain(self, wait: float = 0.1) -> list[dict[str, Any]]:
        """Every frame that arrives until `wait` seconds pass without one. (A receive that times
        out would cancel the application, so this polls with receive_nothing.)"""
        frames = []
        while not await self.communicator.receive_nothing(timeout=wait):
            frames.append(await self.recv())
        return frames

    async def closed_with(self, timeout: float = 5) -> int:
        """Wait for the server to close the socket; return the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            output = await self.communicator.receive_output(max(deadline - asyncio.get_running_loop().time(), 0.01))
            if output["type"] == "websocket.close":
                return output.get("code", CloseCode.NORMAL)  # ASGI's default

    async def nothing(self, frame_type: str, wait: float = 0.3) -> None:
        frames = await self.drain(wait)
        assert not [f for f in frames if f["type"] == frame_type], frames

    async def close(self) -> None:
        try:
            await self.communicator.disconnect()
        except (Exception, asyncio.CancelledError):  # the server closed it already
            pass


async def open_socket(cookie: str | None = None, *, origin: str | None = ORIGIN) -> tuple[Socket, bool, int | None]:
    from config.asgi import application

    headers = [(b"host", b"testserver")]  # as a browser sends it: the Origin check compares the two
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return Socket(communicator), connected, code
