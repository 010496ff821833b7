"""Message search on a real PostgreSQL (tests/support/postgres_server.py, a UTF-8 LC_CTYPE), in a
fresh process: the same behaviour as on SQLite (tests/app/test_search.py), and the query plan: a
query of 3 characters or more, English or Chinese, is answered by the pg_trgm index
(message_body_trgm), which the migration makes and takes away again."""

import json
import secrets
import subprocess
import sys

import pytest

from tests.support.daphne_server import REPO_ROOT, clean_env, run_manage
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.timeout(180)

BEHAVIOUR = r"""
import json
import django
django.setup()
from django.contrib.auth.models import User
from chat import group_commit, search, services
from chat.errors import ChatError
from chat.models import Membership

alice, bob, carol = (User.objects.create_user(name) for name in ("alice", "bob", "carol"))
lobby = services.room_create(slug="lobby", name="Lobby")
other = services.room_create(slug="other", name="Other")
secret = services.room_create(slug="secret", name="Secret", private=True)
banned = services.room_create(slug="banned", name="Banned")
old = services.room_create(slug="old", name="Old")
Membership.objects.create(room=secret, user=bob, invited=True)
ours, _ = services.direct_open(user=alice, usernames=["bob"])
theirs, _ = services.direct_open(user=bob, usernames=["carol"])

def say(room, author, body):
    return services.message_send(room=room, author=author, body=body)[0]["id"]

# Group commit stores a batch of sends in one insert: each is searchable.
batch = [group_commit.NewMessage(author=bob, body=body) for body in ("明天的会议改到三点", "今天没有会", "Say HELLO World")]
group_commit.messages_send(room=lobby, sends=batch)
say(lobby, bob, "Hello there")
say(lobby, bob, "à l'école")
say(lobby, bob, "100% sure")
say(lobby, bob, "a_b")
say(lobby, bob, "axb")
for room in (secret, banned, old, ours):
    say(room, bob, f"needle in {room.slug}")
say(theirs, carol, "needle in theirs")
say(lobby, alice, "needle from alice")
services.ban_create(room=banned, user=alice)
services.room_archive(room=old)
gone = say(lobby, alice, "secret plan")
services.message_delete_own(room=lobby, author=alice, message_id=gone)
edited = say(other, alice, "first draft")
services.message_edit(room=other, author=alice, message_id=edited, body="final version")
items = [say(other, bob, f"item {n}") for n in range(5)]

def bodies(q, **options):
    return [(m["room"], m["body"]) for m in search.search_messages(user=alice, q=q, **options)[0]]

def page(q, **options):
    messages, has_more = search.search_messages(user=alice, q=q, **options)
    return [m["id"] for m in messages], has_more

def refused(**options):
    try:
        search.search_messages(user=alice, **options)
    except ChatError as error:
        return error.code
    return None

print(json.dumps({
    "会议": bodies("会议"),
    "会议改到": bodies("会议改到"),
    "会": bodies("会"),
    "hello WOR": bodies("hello WOR"),
    "HELLO": bodies("HELLO"),
    "ÉCOLE": bodies("ÉCOLE"),
    "0%": bodies("0%"),
    "_": bodies("_"),
    "a_b": bodies("a_b"),
    "needle": sorted(bodies("needle")),
    "needle by bob in the lobby": bodies("needle", room="lobby", author="bob"),
    "needle by alice": bodies("needle", author="alice"),
    "needle by nobody": bodies("needle", author="nobody"),
    "secret": bodies("secret"),
    "draft": bodies("draft"),
    "final": bodies("final"),
    "items": items,
    "item page 1": page("item", limit=2),
    "item page 2": page("item", limit=2, before=items[3]),
    "item page 3": page("item", limit=2, before=items[1]),
    "it page": page("it", limit=3, before=items[4]),
    "room banned": refused(q="needle", room="banned"),
    "room old": refused(q="needle", room="old"),
    "room theirs": refused(q="needle", room=theirs.slug),
    "empty q": refused(q="   "),
    "ours": ours.slug,
}, ensure_ascii=False))
"""

# Enough messages for the planner to prefer an index to reading the table, as in production.
EXPLAIN = r"""
import json, random
import django
django.setup()
from django.contrib.auth.models import User
from django.db import connection
from chat import search, services
from chat.models import Message, Room

room = services.room_create(slug="lobby", name="Lobby")
bob = User.objects.create_user("bob")
words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "今天", "天气", "很好", "我们", "开会", "吃饭"]
rng = random.Random(7)
count = 10000
Message.objects.bulk_create(
    (Message(room=room, author=bob, seq=n, body=" ".join(rng.choice(words) for _ in range(8))) for n in range(1, count + 1)),
    batch_size=5000,
)
Room.objects.filter(pk=room.pk).update(last_seq=count, last_rev=count)
services.message_send(room=room, author=bob, body="明天的会议改到三点 Zebra Quartz")
with connection.cursor() as cursor:
    # As autovacuum leaves a table: the GIN index's pending list merged, statistics taken.
    cursor.execute("VACUUM ANALYZE chat_message")
    cursor.execute("SELECT datctype FROM pg_database WHERE datname = current_database()")
    ctype = cursor.fetchone()[0]
    cursor.execute("SELECT show_trgm('会议改')")
    trigrams = cursor.fetchone()[0]

def plan(q):
    queryset = search._matching(q).filter(room_id__in=search.readable_room_ids(user=bob)).order_by("-pk")
    return queryset.values("pk")[:21].explain(analyze=True)

plans = {q: plan(q) for q in ("zebra QUARTZ", "会议改", "会议")}
found = {q: [m["body"] for m in search.search_messages(user=bob, q=q)[0]] for q in plans}
print(json.dumps({"ctype": ctype, "trigrams": trigrams, "plans": plans, "found": found}, ensure_ascii=False))
"""

REVERSIBLE = """
import json
import django
django.setup()
from django.core.management import call_command
from django.db import connection

def index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_body_trgm'")
        return [row[0] for row in cursor.fetchall()]

states = [index()]
call_command("migrate", "chat", "0007_unread", verbosity=0)
states.append(index())
call_command("migrate", verbosity=0)
states.append(index())
print(json.dumps(states))
"""


@pytest.fixture(scope="module")
def postgres():
    """The server, with a database `migrated` that each test copies (migrating takes seconds)."""
    with PostgresServer() as server:
        server._run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "migrated")
        run_manage(_env(server, "migrated"), "migrate", "--no-input", timeout=120)
        yield server


def _env(postgres: PostgresServer, database: str) -> dict[str, str]:
    return clean_env(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": postgres.url.rsplit("/", 1)[0] + f"/{database}",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        }
    )


def _fresh_database(postgres: PostgresServer, name: str) -> dict[str, str]:
    """A new database on the server, a copy of the migrated one; the environment that names it."""
    postgres._run("createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-T", "migrated", name)
    return _env(postgres, name)


def _run(env: dict[str, str], script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_search_finds_substrings_in_readable_rooms_only(postgres):
    found = json.loads(_run(_fresh_database(postgres, "behaviour"), BEHAVIOUR))
    assert found["会议"] == [["lobby", "明天的会议改到三点"]]
    assert found["会议改到"] == [["lobby", "明天的会议改到三点"]]
    assert found["会"] == [["lobby", "今天没有会"], ["lobby", "明天的会议改到三点"]]
    assert found["hello WOR"] == [["lobby", "Say HELLO World"]]
    assert found["HELLO"] == [["lobby", "Hello there"], ["lobby", "Say HELLO World"]]
    assert found["ÉCOLE"] == [["lobby", "à l'école"]]
    assert found["0%"] == [["lobby", "100% sure"]]
    assert found["_"] == found["a_b"] == [["lobby", "a_b"]]
    # Not the private room alice holds no access to, the room she is banned from, the archived
    # room, or bob and carol's conversation.
    assert found["needle"] == sorted([["lobby", "needle from alice"], [found["ours"], f"needle in {found['ours']}"]])
    assert found["needle by bob in the lobby"] == []
    assert found["needle by alice"] == [["lobby", "needle from alice"]]
    assert found["needle by nobody"] == []
    assert found["secret"] == [] and found["draft"] == []
    assert found["final"] == [["other", "final version"]]
    items = found["items"]
    assert found["item page 1"] == [[items[4], items[3]], True]
    assert found["item page 2"] == [[items[2], items[1]], True]
    assert found["item page 3"] == [[items[0]], False]
    assert found["it page"] == [[items[3], items[2], items[1]], True]
    assert found["room banned"] == "forbidden" and found["room theirs"] == "forbidden"
    assert found["room old"] == "not_found"
    assert found["empty q"] == "bad_request"


def test_three_characters_or_more_use_the_trigram_index_in_english_and_chinese(postgres):
    outcome = json.loads(_run(_fresh_database(postgres, "planned"), EXPLAIN))
    assert outcome["ctype"] == "C.UTF-8"
    assert len(outcome["trigrams"]) == 4  # "  会", " 会议", "会议改", "议改 ": Chinese is indexed, not dropped
    for q in ("zebra QUARTZ", "会议改"):
        plan = outcome["plans"][q]
        assert "Bitmap Index Scan on message_body_trgm" in plan, plan
        assert outcome["found"][q] == ["明天的会议改到三点 Zebra Quartz"]
    # Two characters have no trigram: a scan, still right.
    assert "message_body_trgm" not in outcome["plans"]["会议"]
    assert outcome["found"]["会议"] == ["明天的会议改到三点 Zebra Quartz"]


def test_the_migration_goes_back_and_forth(postgres):
    made, gone, again = json.loads(_run(_fresh_database(postgres, "reversible"), REVERSIBLE))
    assert len(made) == 1 and made[0].endswith("USING gin (upper(body) gin_trgm_ops)"), made
    assert gone == []
    assert again == made


def test_a_database_under_the_c_locale_is_warned_about(postgres):
    """Under C, pg_trgm leaves Chinese out of the index: `migrate` and `check --database` say so,
    and search still finds it (by reading every message)."""
    name = "c_locale"
    postgres._run(
        "createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-T", "template0", "-l", "C", name
    )
    env = _env(postgres, name)
    migrated = run_manage(env, "migrate", "--no-input", timeout=120)
    assert "chat.W001" in migrated.stderr and "LC_CTYPE C" in migrated.stderr
    found = _run(
        env,
        "import django, json; django.setup()\n"
        "from django.contrib.auth.models import User\n"
        "from chat import search, services\n"
        "room = services.room_create(slug='lobby', name='Lobby')\n"
        "bob = User.objects.create_user('bob')\n"
        "services.message_send(room=room, author=bob, body='明天的会议改到三点')\n"
        "print(json.dumps([m['body'] for m in search.search_messages(user=bob, q='会议改')[0]], ensure_ascii=False))",
    )
    assert json.loads(found) == ["明天的会议改到三点"]
    utf8 = run_manage(_fresh_database(postgres, "utf8_locale"), "check", "--database", "default")
    assert "chat.W001" not in utf8.stderr + utf8.stdout
