"""The bare baseline of `make bench`: a `websockets` broadcast server, the ceiling for Python.

    .venv/bin/python -m bench.bare_server --port 8765

Path /ws/chat/<room>/; rooms are a dict of sets in this one process (in-process rooms cannot span
processes, so it runs as one). Each text frame a client sends is passed as it is to
`websockets.broadcast` over its room, the sender included. The wire is the naive baseline's: a
client sends {"message": body} and every member gets {"message": body}; the server does not parse
it. No auth, no persistence, no limits. It prints "ready" once it listens.

One departure from the library's defaults: permessage-deflate is off (compression=None). Daphne,
which serves the product and the naive baseline, does not negotiate it, and with it on
websockets.broadcast compresses every copy for each socket and keeps a zlib context per socket,
which would make this baseline slower and bigger than the servers it is the ceiling for.
"""

from __future__ import annotations

import argparse
import asyncio
import re

import websockets
from websockets.asyncio.server import ServerConnection, serve

ROOMS: dict[str, set[ServerConnection]] = {}
PATH = re.compile(r"^/ws/chat/(\w+)/$")


async def handler(ws: ServerConnection) -> None:
    match = PATH.match(ws.request.path)
    if match is None:
        await ws.close(4404, "unknown path")
        return
    room = ROOMS.setdefault(match.group(1), set())
    room.add(ws)
    try:
        async for text in ws:
            websockets.broadcast(room, text)
    finally:
        room.discard(ws)


async def main(host: str, port: int) -> None:
    async with serve(handler, host, port, compression=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    asyncio.run(main(options.host, options.port))
