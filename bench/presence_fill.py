"""Bytes and frames the server sends while N people fill one room over 2 workers (bin/cluster,
the same processes as `make cluster`): each socket joins and reads everything until the room is
quiet. Compare `--list-max 1000` (the whole list to everyone on every join, as before change
frames existed) with the default (CHAT_PRESENCE_LIST_MAX 100).

    .venv/bin/python -m bench.presence_fill --users 300 [--list-max 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import textwrap
import time

from websockets.asyncio.client import connect

from tests.support.cluster_server import ClusterServer


async def fill(cluster: ClusterServer, tokens: list[str], quiet: float) -> dict[str, float]:
    received = {"bytes": 0, "frames": 0, "presence_bytes": 0, "presence_frames": 0}
    joined = 0
    last_frame = time.monotonic()
    all_joined = asyncio.Event()
    started = time.monotonic()

    async def one(i: int, token: str) -> None:
        nonlocal joined, last_frame
        url = cluster.ws_url(worker=1 + i % 2)
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            origin=cluster.base_url(1 + i % 2),
            max_size=2**22,
            open_timeout=60,
            proxy=None,
        ) as ws:
            await ws.send(json.dumps({"type": "join", "room": "fill", "ref": "j"}))
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=quiet)
                except TimeoutError:
                    if all_joined.is_set():
                        return
                    continue
                last_frame = time.monotonic()
                size = len(text.encode())
                received["bytes"] += size
                received["frames"] += 1
                kind = json.loads(text)["type"]
                if kind == "presence":
                    received["presence_bytes"] += size
                    received["presence_frames"] += 1
                elif kind == "joined":
                    joined += 1
                    if joined == len(tokens):
                        all_joined.set()

    await asyncio.gather(*(one(i, token) for i, token in enumerate(tokens)))
    return {**received, "seconds_to_quiet": round(last_frame - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--list-max", type=int, default=100)
    parser.add_argument("--quiet", type=float, default=3.0)
    args = parser.parse_args()
    env = {"CHAT_PRESENCE_LIST_MAX": str(args.list_max), "CHAT_MAX_SOCKETS_PER_USER": "10"}
    with ClusterServer(workers=2, env=env) as cluster:
        code = textwrap.dedent(f"""
            from django.contrib.auth import get_user_model
            from chat import services
            services.room_create(slug="fill", name="Fill")
            tokens = []
            for i in range({args.users}):
                user = get_user_model().objects.create_user(f"fill{{i:04d}}")
                tokens.append(services.token_create(user=user, name="fill")[1])
            print(" ".join(tokens))
        """)
        tokens = cluster.shell(code).split()
        result = asyncio.run(fill(cluster, tokens, args.quiet))
    print(json.dumps({"users": args.users, "list_max": args.list_max, **result}))


if __name__ == "__main__":
    main()
