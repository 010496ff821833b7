"""A raw WebSocket client for real workers: open with a cookie and Origin, send, receive, wait for a
frame or a reply by ref, and the close code."""

import asyncio
import json
import secrets
import time
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.daphne_server import DaphneServer


async def open_ws(
    server: DaphneServer, cookie: str | None = None, *, origin: str | None = "default", timeout: float = 10
):
    headers = {}
    if cookie is not None:
        headers["Cookie"] = cookie
    if origin == "default":
        origin = server.base_url
    if origin is not None:
        headers["Origin"] = origin
    return await asyncio.wait_for(
        websockets.connect(
            server.ws_url,
            additional_headers=headers,
            max_size=None,
            max_queue=None,
            compression=None,
            proxy=None,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=5,
        ),
        timeout=timeout + 1,
    )


async def send(ws, frame_type: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": frame_type, **fields}))


async def recv(ws, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))


async def next_frame(ws, wanted, timeout: float, what: str) -> dict[str, Any]:
    """The next frame for which `wanted(frame)` holds; the others are skipped (and listed in the
    failure message)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        try:
            frame = await recv(ws, timeout=max(remaining, 0.01))
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s; got {seen}") from None
        if wanted(frame):
            return frame
        seen.append(frame)


async def expect(ws, frame_type: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
    """The next frame of `frame_type` matching `match`."""
    return await next_frame(
        ws,
        lambda f: f["type"] == frame_type and all(f.get(k) == v for k, v in match.items()),
        timeout,
        f"{frame_type} frame matching {match}",
    )


async def request(ws, frame_type: str, timeout: float = 5, **fields: Any) -> dict[str, Any]:
    """Send a frame with a fresh ref; return the reply that carries it."""
    ref = secrets.token_hex(6)
    await send(ws, frame_type, ref=ref, **fields)
    return await next_frame(ws, lambda f: f.get("ref") == ref, timeout, f"reply to {frame_type} (ref {ref})")


async def join(ws, room: str, **fields: Any) -> dict[str, Any]:
    reply = await request(ws, "join", room=room, **fields)
    assert reply["type"] == "joined", reply
    return reply


async def ping(ws) -> None:
    reply = await request(ws, "ping")
    assert reply["type"] == "pong", reply


async def close_code(ws, timeout: float = 5) -> tuple[int, bool]:
    """Wait until the server ends the connection (reading and dropping frames meanwhile).
    Returns (close code, whether the server sent a close frame)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the connection was still open after {timeout} s")
            await asyncio.wait_for(ws.recv(), timeout=remaining)
    except ConnectionClosed as closed:
        return ws.close_code, closed.rcvd is not None
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {timeout} s") from None
