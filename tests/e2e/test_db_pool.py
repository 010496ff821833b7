"""Against a real PostgreSQL, in a fresh process. The connection pool (chat.dbbackend): a pool whose every
connection is busy (exhausted, PostgreSQL healthy) makes a caller wait, and never turns the next
callers away at once as if PostgreSQL were down; a PostgreSQL that is down does (for a second,
so that the worker's one sync thread is not held by one wait after another). And the room's row
lock: a ban waits for a send that holds it."""

import json
import secrets
import subprocess
import sys

import pytest

from tests.support.daphne_server import REPO_ROOT, clean_env
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.timeout(120)

# One thread holds the pool's only connection; the main thread's request times out (exhausted);
# then the holder lets go 0.3 s into the main thread's next request, which must get the connection.
SCRIPT = """
import json, threading, time
import django
django.setup()
from django.db import connection

held, release = threading.Event(), threading.Event()

def holder():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    held.set()
    release.wait()
    connection.close()

def query():
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        outcome = "ok"
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    connection.close()
    return outcome, round(time.monotonic() - started, 2)

thread = threading.Thread(target=holder)
thread.start()
held.wait()
first = query()
threading.Timer(0.3, release.set).start()
second = query()
thread.join()
print(json.dumps({"first": first, "second": second}))
"""


def _run(postgres: PostgresServer, script: str, pool_max: int = 1) -> dict:
    env = clean_env(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": postgres.url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "CHAT_DB_POOL_MIN": "1",
            "CHAT_DB_POOL_MAX": str(pool_max),
            "CHAT_DB_POOL_TIMEOUT": "1",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


def test_an_exhausted_pool_makes_callers_wait_not_fail(postgres):
    outcome = _run(postgres, SCRIPT)
    (first, first_took), (second, second_took) = outcome["first"], outcome["second"]
    assert first.startswith("OperationalError") and 0.9 <= first_took < 2, outcome  # waited its second
    assert (second, second_took >= 0.25) == ("ok", True), outcome  # waited, and got the connection


DOWN = """
import json, time
import django
django.setup()
from django.db import connection

def query():
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        outcome = "ok"
    except Exception as error:
        outcome = type(error).__name__
    connection.close()
    return outcome, round(time.monotonic() - started, 2)

print(json.dumps({"first": query(), "second": query()}))
"""


def test_a_pool_that_cannot_connect_fails_the_next_callers_at_once(postgres):
    postgres.stop()
    try:
        outcome = _run(postgres, DOWN)
    finally:
        postgres.start()
    (first, first_took), (second, second_took) = outcome["first"], outcome["second"]
    assert first == "OperationalError" and first_took >= 0.9, outcome
    assert second == "OperationalError" and second_took < 0.3, outcome


# A send holds the room's lock (its batch's UPDATE of the counters) for half a second; a moderator
# bans its author meanwhile. The ban waits for the send's commit, so the send's access check (made
# under the lock) and the ban never overlap: the message is stored before the ban, or refused.
SERIALISED = """
import json, threading, time
import django
django.setup()
from django.contrib.auth.models import User
from django.db import connection, transaction
from chat import group_commit, services

room = services.room_create(slug="lobby", name="Lobby")
bob = User.objects.create_user("bob")
connection.close()
locked = threading.Event()

def batch():
    with transaction.atomic():
        group_commit._advance(room_id=room.pk, count=1)
        locked.set()
        time.sleep(0.5)
        transaction.set_rollback(True)
    connection.close()

thread = threading.Thread(target=batch)
thread.start()
locked.wait()
started = time.monotonic()
services.ban_create(room=room, user=bob)
took = time.monotonic() - started
thread.join()
print(json.dumps({"ban_waited": round(took, 2)}))
"""


def test_a_ban_waits_for_a_send_holding_the_room(postgres):
    from tests.support.daphne_server import run_manage

    env = clean_env(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": postgres.url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        }
    )
    run_manage(env, "migrate", "--no-input", timeout=120)
    outcome = _run(postgres, SERIALISED, pool_max=4)
    assert outcome["ban_waited"] >= 0.4, outcome
