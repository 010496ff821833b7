"""Fan-out on a real Daphne worker: the sockets of one room get each message once, in order."""

import asyncio

from tests.support.websocket import expect, join, open_ws, recv, request, send


async def test_sockets_of_one_room_on_one_worker_get_each_message_once_in_order(server):
    cookies = [await asyncio.to_thread(server.login, name) for name in ("alice", "bob")]
    sockets = [await open_ws(server, cookies[i % 2]) for i in range(6)]
    try:
        for ws in sockets:
            await join(ws, "lobby")
        leaver = sockets[5]
        assert (await request(leaver, "leave", room="lobby"))["type"] == "left"
        sender, listeners = sockets[0], sockets[1:5]
        acks = []
        for n in range(5):
            # The sender's own copy comes after its ack, as it would through its dispatch loop.
            ack = await request(sender, "send", room="lobby", body=f"fan {n}")
            assert ack["type"] == "ack", ack
            acks.append(ack["seq"])
            echoed = await expect(sender, "message")
            assert echoed["message"]["seq"] == ack["seq"]
        for ws in listeners:
            got = [(await expect(ws, "message"))["message"] for _ in acks]
            assert [m["seq"] for m in got] == acks and [m["body"] for m in got] == [f"fan {n}" for n in range(5)]
        await send(leaver, "ping", ref="p")
        assert (await recv(leaver))["type"] == "pong", "the socket that left gets no message"
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
