"""How many SQL statements a `join` costs, counted over a real socket (every thread: the
consumers' ORM calls run in the sync thread), so the count cannot creep back up unnoticed.

A join checks the room, the user's ban and membership and reads the room's counters in one
query, and its latest messages in a second; a first join also records the membership."""

import pytest
from channels.db import database_sync_to_async
from django.db.backends.utils import CursorWrapper

from chat import services
from chat.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement run from now on, by any thread (transaction control left out: SQLite
    sends a BEGIN of its own where PostgreSQL does not)."""
    seen: list[str] = []
    real = CursorWrapper._execute

    def counting(self, sql, *args, **kwargs):
        if not sql.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")):
            seen.append(sql)
        return real(self, sql, *args, **kwargs)

    monkeypatch.setattr(CursorWrapper, "_execute", counting)
    return seen


async def joined_with(socket, statements, room: str) -> tuple[dict, list[str]]:
    statements.clear()
    reply = await socket.join(room)
    return reply, list(statements)


async def test_a_returning_members_join_takes_two_queries(alice, bob, make_room, connect, statements):
    lobby = await database_sync_to_async(make_room)("lobby", name="Lobby")
    for i in range(3):
        await database_sync_to_async(services.message_send)(room=lobby, author=bob, body=f"hello {i}")
    first = await connect(alice)
    reply, first_sql = await joined_with(first, statements, "lobby")
    assert [m["body"] for m in reply["messages"]] == ["hello 0", "hello 1", "hello 2"]
    assert len(first_sql) == 3, first_sql  # room and checks, the membership (insert), the messages
    assert await database_sync_to_async(Membership.objects.filter(room=lobby, user=alice).count)() == 1
    again = await connect(alice)
    reply, sql = await joined_with(again, statements, "lobby")
    assert reply["rev"] == 3 and len(reply["messages"]) == 3
    assert len(sql) == 2, sql


async def test_a_private_rooms_join_takes_two_queries_and_still_refuses_outsiders(
    alice, bob, make_room, connect, statements
):
    team = await database_sync_to_async(make_room)("team", name="Team", private=True)
    await database_sync_to_async(services.membership_add)(room=team, user=alice)
    socket = await connect(alice)
    reply, sql = await joined_with(socket, statements, "team")
    assert reply["room"] == "team"
    assert len(sql) == 2, sql
    outsider = await connect(bob)
    refused = await outsider.request("join", room="team")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    await database_sync_to_async(services.ban_create)(room=team, user=alice)
    banned = await (await connect(alice)).request("join", room="team")
    assert banned["type"] == "error" and banned["code"] == "forbidden" and "banned" in banned["detail"]
