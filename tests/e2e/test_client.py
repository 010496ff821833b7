"""The terminal client (`python -m clients.terminal`) against a real Daphne worker.

Interactive runs happen in a pseudo-terminal (pexpect), as a person would use the client; the
non-interactive `--send` runs also with piped standard input, as cron and bots use it. The second
party is a plain `websockets` connection logged in through the real login form. The client runs
without DJANGO_SETTINGS_MODULE: it must not need Django. Every wait is bounded (10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import uuid
from typing import Any

import pexpect
import pytest
from websockets.sync.client import connect

from clients.connection import ChatClient
from tests.support.daphne_server import REPO_ROOT, DaphneServer, free_port
from tests.support.terminal import ID, PASSWORD, TIME, WAIT, client_env, finish, output, spawn


@pytest.fixture(scope="module")
def server():
    # Revoked tokens are noticed by the worker's sweep: every second here, so a test sees it soon.
    with DaphneServer(env={"CHAT_TOKEN_SWEEP_SECONDS": "1"}) as daphne:
        yield daphne


# Helpers ----------------------------------------------------------------------------------------


def run_client(
    server: DaphneServer | None, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    url = ["--url", server.ws_url] if server is not None else []
    return subprocess.run(
        [sys.executable, "-m", "clients.terminal", *url, *args],
        cwd=REPO_ROOT,
        env=client_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def post(server: DaphneServer, room: str, bodies: list[str], author: str) -> None:
    """Store messages from the server side, as an admin's script would (no broadcast: the
    worker's in-process channel layer is not reachable from here; clients catch up)."""
    server.manage(
        "shell",
        "--verbosity",
        "0",
        "--command",
        "from django.contrib.auth import get_user_model\n"
        "from chat.models import Room\n"
        "from chat.services import message_send\n"
        f"room = Room.objects.get(slug={room!r})\n"
        f"author = get_user_model().objects.get(username={author!r})\n"
        f"for body in {json.dumps(bodies)}:\n"
        "    message_send(room=room, author=author, body=body)\n",
    )


class Party:
    """The other person in the room: a `websockets` connection with a browser's session."""

    def __init__(self, server: DaphneServer, username: str, *rooms: str) -> None:
        self.server, self.username, self.rooms = server, username, rooms
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> Party:
        self.ws = self.stack.enter_context(
            connect(
                self.server.ws_url,
                additional_headers={"Cookie": self.server.login(self.username)},
                origin=self.server.base_url,
                proxy=None,
                open_timeout=WAIT,
                close_timeout=2,
            )
        )
        for room in self.rooms:
            self.frame("join", room=room)
            self.expect(lambda f, room=room: f["type"] == "joined" and f["room"] == room, "joined")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stack.close()

    def frame(self, frame_type: str, **fields: Any) -> None:
        self.ws.send(json.dumps({"type": frame_type, **fields}))

    def expect(self, wanted, what: str, timeout: float = WAIT) -> dict[str, Any]:
        seen = []
        try:
            while True:
                frame = json.loads(self.ws.recv(timeout=timeout))
                if wanted(frame):
                    return frame
                seen.append(frame)
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s; got {seen}") from None

    def say(self, room: str, body: str) -> dict[str, Any]:
        """Send a message; its ack (`id`, `seq`, `rev`)."""
        client_id = uuid.uuid4().hex
        self.frame("send", room=room, body=body, client_id=client_id)
        return self.expect(lambda f: f["type"] == "ack" and f["client_id"] == client_id, f"ack for {body!r}")

    def expect_message(self, room: str, body: str) -> dict[str, Any]:
        frame = self.expect(
            lambda f: f["type"] == "message" and f["room"] == room and f["message"]["body"] == body,
            f"message {body!r} in {room}",
        )
        return frame["message"]

    def history(self, room: str) -> list[str]:
        self.frame("history", room=room, limit=100, ref="h")
        return [m["body"] for m in self.expect(lambda f: f["type"] == "history", "history")["messages"]]


# Interactive ------------------------------------------------------------------------------------


def test_interactive_chat_with_a_second_party(server):
    post(server, "lobby", [f"old {n}" for n in range(60)], author="carol")
    with Party(server, "bob", "lobby", "random") as bob:
        child = spawn(server, "--user", "alice", "--room", "lobby", env=PASSWORD)
        child.expect_exact("online in #lobby: alice, bob")
        child.expect_exact("type a message")
        shown = output(child)
        # Joining shows the latest 20 (--backlog), oldest first, as `#ID [HH:MM] author: body`.
        assert re.search(ID + TIME + r"carol: old 40\n(.*\n)*" + ID + TIME + r"carol: old 59\n", shown), shown
        assert "old 39" not in shown

        bob.say("lobby", "hello alice")
        child.expect(TIME + "bob: hello alice")
        bob.say("lobby", "two\nlines")
        child.expect(r"#(\d+) " + TIME + r"bob: two\r\n( +)lines\r\n")
        assert len(child.match.group(2)) == len(f"#{child.match.group(1)} [HH:MM] ")  # lined up with the author

        child.sendline("hi bob")
        assert bob.expect_message("lobby", "hi bob")["author"] == "alice"
        child.expect("alice: hi bob")  # the client shows its own message once the server has it

        child.sendline("/who")
        child.expect_exact("online in #lobby: alice, bob")

        child.sendline("/history")
        child.expect_exact("older messages of #lobby")
        child.expect(TIME + r"carol: old 20\r\n")
        child.expect(TIME + r"carol: old 39\r\n")

        child.sendline("/join nowhere")
        child.expect_exact("There is no room 'nowhere' (or it is archived).")

        child.sendline("/join random")
        child.expect_exact("online in #random: alice, bob")
        child.expect_exact("now in #random")
        child.sendline("in random")
        assert bob.expect_message("random", "in random")["author"] == "alice"
        bob.say("lobby", "meanwhile in the lobby")
        child.expect(TIME + "#lobby bob: meanwhile in the lobby")  # not the current room: named

        child.sendline("/rooms")
        child.expect_exact("rooms: #lobby, *#random")
        child.sendline("/help")
        child.expect_exact("/history [N]")
        child.sendline("/quit")
        assert finish(child) == 0
    assert output(child).count("bob: hello alice") == 1
    assert "Traceback" not in output(child)


def test_reconnects_after_a_restart_and_shows_each_message_once(server):
    with Party(server, "bob", "random") as bob:
        child = spawn(
            server, "--user", "alice", "--room", "random", "--backlog", "0", "--reconnect-max", "1", env=PASSWORD
        )
        child.expect_exact("type a message")
        bob.say("random", "before the restart")
        child.expect("bob: before the restart")

    server.stop_worker()  # SIGTERM: the worker says goodbye with 1001 before it exits
    child.expect(r"disconnected \(close 1001: server shutting down\); reconnecting in")
    child.sendline("typed while down")
    child.expect_exact("queued")
    post(server, "random", ["while down 1", "while down 2"], author="bob")
    server.start_worker()

    child.expect_exact("reconnected; catching up")
    child.expect(TIME + "bob: while down 1")
    child.expect(TIME + "bob: while down 2")
    child.expect(TIME + "alice: typed while down")
    with Party(server, "bob", "random") as bob:
        bob.say("random", "after the restart")
        child.expect(TIME + "bob: after the restart")
        stored = bob.history("random")
    child.sendeof()  # Ctrl+D
    assert finish(child) == 0

    shown = output(child)
    for body in ("before the restart", "while down 1", "while down 2", "typed while down", "after the restart"):
        assert shown.count(f": {body}\n") == 1, shown
    assert stored.count("typed while down") == 1  # resent with its client_id: stored once


def as_alice_meanwhile(server: DaphneServer, room: str, *statements: str) -> None:
    """Changes made while the worker is down, through the services as alice (nothing is
    broadcast: clients learn of them when they join again)."""
    server.manage(
        "shell",
        "--verbosity",
        "0",
        "--command",
        "from django.contrib.auth import get_user_model\n"
        "from chat.models import Room\n"
        "from chat.services import message_delete_own, message_edit, message_send, reaction_set\n"
        f"room = Room.objects.get(slug={room!r})\n"
        "alice = get_user_model().objects.get(username='alice')\n" + "".join(f"{line}\n" for line in statements),
    )


def test_catches_up_on_what_changed_while_away_and_speaks_threads_reactions_and_direct(server):
    with Party(server, "alice", "random") as alice:
        child = spawn(
            server,
            *("--user", "bob", "--room", "random", "--backlog", "0", "--reconnect-max", "1"),
            env={**PASSWORD, "TERM": "xterm"},  # a colour terminal: **bold** is shown bold
        )
        child.expect_exact("type a message")
        first = alice.say("random", "first draft")["id"]
        second = alice.say("random", "soon regretted")["id"]
        child.expect(f"#{first} " + TIME + "alice: first draft")
        child.expect(f"#{second} " + TIME + "alice: soon regretted")

        child.sendline(f"/react {first} 👍")
        child.expect_exact(f"* reactions on #{first} (alice: first draft): 👍 1 (bob)")
        seen = alice.expect(lambda f: f["type"] == "message_updated", "the reaction")["message"]
        assert seen["reactions"] == {"👍": ["bob"]}
        child.sendline(f"/reply {first} on it")
        reply = alice.expect_message("random", "on it")
        assert (reply["reply_to"], reply["author"]) == (first, "bob")
        child.expect(rf"\[thread #{first}\] #{reply['id']} " + TIME + "bob: on it")

    server.stop_worker()
    child.expect_exact("reconnecting in")
    as_alice_meanwhile(
        server,
        "random",
        f"message_edit(room=room, author=alice, message_id={first}, body='**final** text')",
        f"message_delete_own(room=room, author=alice, message_id={second})",
        f"reaction_set(room=room, user=alice, message_id={first}, emoji='🎉')",
        f"message_send(room=room, author=alice, body='from afar', reply_to={first})",
    )
    server.start_worker()
    child.expect_exact("reconnected; catching up")
    # Each changed message once, as it is now: the tombstone, then the first one with its new
    # text, both reactions and the thread's two replies, then the reply that is new.
    child.expect(f"#{second} " + TIME + r"alice: \(deleted\)")
    child.expect_exact("alice: \x1b[1mfinal\x1b[22m text (edited) (2 replies: alice, bob)")
    child.expect_exact("👍 1 (bob)  🎉 1 (alice)")
    child.expect(rf"\[thread #{first}\] #\d+ " + TIME + "alice: from afar")

    child.sendline(f"/thread {reply['id']}")  # a reply's id: its thread
    child.expect_exact(f"* thread #{first} in #random: 2 replies")
    child.expect(f"  ↳ #{reply['id']} " + TIME + "bob: on it")
    child.expect(r"  ↳ #\d+ " + TIME + "alice: from afar")
    child.sendline(f"/link {reply['id']}")  # the page's link: the thread open over its first message
    child.expect_exact(f"{server.base_url}/rooms/random/?message={first}#thread-{first}")
    child.sendline(f"/edit {reply['id']} on it, done")
    child.expect(rf"\[thread #{first}\] #{reply['id']} " + TIME + r"bob: on it, done \(edited\)")
    child.sendline(f"/delete {first}")
    child.expect_exact("! You can only change your own messages.")

    with Party(server, "alice") as alice:
        child.sendline("/dm alice")
        child.expect_exact("* joined dm with alice")
        child.expect_exact("* now in dm with alice")
        child.sendline("psst")
        notice = alice.expect(lambda f: f["type"] == "direct_message", "the direct message")
        assert (notice["message"]["body"], notice["info"]["name"]) == ("psst", "bob")
        child.expect(f"#{notice['message']['id']} " + TIME + "bob: psst")
        # A conversation bob has not opened: one line says who wrote what.
        alice.frame("direct", users=["bob", "carol"], ref="d")
        group = alice.expect(lambda f: f["type"] == "direct", "the conversation")["room"]
        alice.frame("join", room=group)
        alice.expect(lambda f: f["type"] == "joined", "joined")
        alice.say(group, "hello you two")
        child.expect_exact("[dm with alice, carol] alice: hello you two")
    child.sendline("/quit")
    assert finish(child) == 0
    shown = output(child)
    assert shown.count("] alice: first draft\n") == 1 and shown.count("] alice: soon regretted\n") == 1
    assert "Traceback" not in shown, shown


# Non-interactive --------------------------------------------------------------------------------


def test_send_posts_one_message_and_exits(server):
    post(server, "random", ["so that ids and lobby's seqs differ"], author="bob")
    with Party(server, "bob", "lobby") as bob:
        child = spawn(server, "--user", "alice", "--room", "lobby", "--send", "deploy done", env=PASSWORD)
        assert finish(child) == 0
        sent = bob.expect_message("lobby", "deploy done")
        assert sent["author"] == "alice"
        # Named by its id, as the interactive client shows it (what /reply and /react take).
        assert output(child) == f"Sent message #{sent['id']} to lobby.\n"

        # The message from standard input; the password as its first line.
        result = run_client(
            server,
            "--user",
            "alice",
            "--password-stdin",
            "--room",
            "lobby",
            "--send",
            "-",
            stdin="chatdemo\nfrom stdin\nsecond line\n",
        )
        assert (result.returncode, result.stderr) == (0, "")
        assert bob.expect_message("lobby", "from stdin\nsecond line")["author"] == "alice"

        result = run_client(server, "--user", "carol", "--quiet", "--send", "-", stdin="piped\n", env=PASSWORD)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert bob.expect_message("lobby", "piped")["author"] == "carol"
        assert bob.history("lobby").count("deploy done") == 1


# Errors -----------------------------------------------------------------------------------------


def test_errors_are_one_sentence_and_a_non_zero_exit(server):
    child = spawn(server, "--user", "alice", env={"CHAT_PASSWORD": "not-the-password"})
    child.expect_exact("Login as 'alice' failed: wrong username or password")
    assert finish(child) == 2

    cases = {
        "unknown room": (["--room", "nowhere"], 2, "There is no room 'nowhere' (or it is archived)."),
        "private room": (["--user", "carol", "--room", "staff"], 2, "You may not enter the room 'staff'"),
        "refused": (["--url", f"ws://127.0.0.1:{free_port()}/ws/chat/"], 1, "connection refused"),
        "bad url": (["--url", "ftp://example.com/"], 2, "Bad URL 'ftp://example.com/'"),
        "no credentials": (["--url", server.ws_url], 2, "No credentials"),
    }
    runs = {}
    for name, (args, _code, _sentence) in cases.items():
        auth = [] if name == "no credentials" or "--user" in args else ["--user", "alice"]
        url = [] if "--url" in args else ["--url", server.ws_url]
        runs[name] = subprocess.Popen(
            [sys.executable, "-m", "clients.terminal", *url, *auth, *args, "--send", "hello"],
            cwd=REPO_ROOT,
            env=client_env(PASSWORD),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=30)
        _args, code, sentence = cases[name]
        assert process.returncode == code, (name, stderr)
        assert sentence in stderr, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, (name, stderr)
        assert stdout == "", (name, stdout)


# Tokens -----------------------------------------------------------------------------------------


def create_token(server: DaphneServer, username: str) -> str:
    return server.manage("create_token", username).stdout.strip().splitlines()[-1]


def test_token_authentication_and_a_revoked_or_invalid_token(server):
    token = create_token(server, "alice")
    with Party(server, "bob", "lobby") as bob:
        child = spawn(server, "--token", token, "--room", "lobby", "--backlog", "0")
        child.expect_exact("type a message")
        bob.say("lobby", "hello token")
        child.expect(TIME + "bob: hello token")
        child.sendline("from a token")
        assert bob.expect_message("lobby", "from a token")["author"] == "alice"

        result = run_client(server, "--room", "lobby", "--send", "via CHAT_TOKEN", env={"CHAT_TOKEN": token})
        assert result.returncode == 0, result.stderr
        assert bob.expect_message("lobby", "via CHAT_TOKEN")["author"] == "alice"

        # Revoked while connected: the worker closes the socket (4401); the client says why.
        server.manage(
            "shell",
            "--verbosity",
            "0",
            "--command",
            "from chat.models import ApiToken\nfrom chat.services import token_revoke\n"
            f"token_revoke(token=ApiToken.objects.get(prefix={token[:12]!r}))\n",
        )
        child.expect_exact("The server rejected the API token (close 4401): it is invalid or has been revoked.")
        assert finish(child) == 2

    result = run_client(server, "--token", "chat_not-a-real-token", "--send", "hello")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "clients.terminal: The server rejected the API token (close 4401): it is invalid or has been revoked."
    )

    # A token sent to the wrong path: the refusal is about the address, not the token.
    wrong_path = server.ws_url.replace("/ws/chat/", "/ws/nope/")
    result = run_client(None, "--url", wrong_path, "--token", token, "--send", "hello")
    assert result.returncode == 2
    assert f"check the path {wrong_path}" in result.stderr and "token was not" not in result.stderr


def test_follow_only_prints_and_says_so(server):
    with Party(server, "bob", "lobby") as bob:
        child = spawn(server, "--user", "alice", "--room", "lobby", "--backlog", "0", "--follow", env=PASSWORD)
        child.expect_exact("following: new messages appear here; Ctrl+C to stop")
        bob.say("lobby", "for the log")
        child.expect(TIME + "bob: for the log")
        child.sendintr()
        finish(child)
    assert "type a message" not in output(child)


# The library ------------------------------------------------------------------------------------


def test_the_echo_bot_of_docs_client_md_answers(server):
    """The bot in docs/client.md, exactly as written there, against a real worker."""
    guide = (REPO_ROOT / "docs" / "client.md").read_text()
    code = guide[guide.index("## The library") :].split("```python\n", 1)[1].split("```", 1)[0]
    token = create_token(server, "alice")
    with Party(server, "bob", "lobby") as bob:
        bot = pexpect.spawn(
            sys.executable,
            ["-c", code],
            cwd=str(REPO_ROOT),
            env=client_env({"CHAT_URL": server.ws_url, "CHAT_TOKEN": token}),
            encoding="utf-8",
            timeout=WAIT,
        )
        try:
            bot.expect_exact("echo bot ready")
            bob.say("lobby", "!echo hello from bob")
            assert bob.expect_message("lobby", "hello from bob")["author"] == "alice"
            bob.say("lobby", "no command here")
            bob.say("lobby", "!echo second")
            assert bob.expect_message("lobby", "second")["author"] == "alice"
        finally:
            bot.terminate(force=True)


class Away(ChatClient):
    """A ChatClient whose reconnection waits for `back` (to be away while others act), and
    which writes down the direct messages it is told of."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.back = asyncio.Event()
        self.back.set()
        self.direct_messages: list[tuple[str, str]] = []

    async def _connect(self) -> Any:
        await self.back.wait()
        return await super()._connect()

    def on_direct_message(self, room: str, info: dict[str, Any], message: dict[str, Any]) -> None:
        self.direct_messages.append((room, message["body"]))


SHOWN = ("body", "html", "deleted", "edited_at", "reactions", "reply_count", "repliers", "reply_to")


async def test_the_library_ends_with_the_current_state_of_what_changed_while_it_was_away(server):
    alice_token, bob_token = [await asyncio.to_thread(create_token, server, name) for name in ("alice", "bob")]
    options: dict[str, Any] = {"backlog": 0, "reconnect_max": 0.5, "ping_interval": None}
    alice = await ChatClient(server.ws_url, token=alice_token, name="alice", **options).start("lobby")
    bob = await Away(server.ws_url, token=bob_token, name="bob", **options).start("lobby")
    try:
        ids = []
        for body in ("to be edited", "to be deleted", "to be liked"):
            ids.append(alice.acks[await alice.send("lobby", body)]["id"])
        await bob.wait_for(lambda: all(bob.rooms["lobby"].find(i) for i in ids), 10, "alice's messages")

        bob.back.clear()
        bob.abort()
        await bob.wait_for(lambda: bob.ws is None, 10, "the drop")
        await alice.edit("lobby", ids[0], "edited, *with* style")
        await alice.delete("lobby", ids[1])
        assert (await alice.react("lobby", ids[2], "👍"))["reactions"] == {"👍": ["alice"]}
        assert (await alice.react("lobby", ids[2], "👍"))["reactions"] == {"👍": ["alice"]}  # already: no change
        await alice.send("lobby", "a reply", reply_to=ids[2])
        bob.back.set()
        await bob.catch_up(20)

        fresh = await ChatClient(server.ws_url, token=bob_token, name="fresh", backlog=50, ping_interval=None).start(
            "lobby"
        )
        try:
            now = {m["id"]: {k: m.get(k) for k in SHOWN} for m in fresh.messages["lobby"].values()}
        finally:
            await fresh.stop()
        held = {m["id"]: {k: m.get(k) for k in SHOWN} for m in bob.messages["lobby"].values()}
        assert held == {i: now[i] for i in held}  # the state someone who saw everything sees
        assert held[ids[0]]["html"] == "<p>edited, <em>with</em> style</p>" and held[ids[1]]["deleted"] is True
        assert (held[ids[2]]["reactions"], held[ids[2]]["reply_count"]) == ({"👍": ["alice"]}, 1)
        assert bob.rooms["lobby"].rev == alice.rooms["lobby"].rev

        # A direct conversation: bob hears of its first message without having joined it.
        slug, info = await alice.direct(["bob"])
        assert info["kind"] == "direct" and info["name"] == "bob"
        await alice.join(slug)
        await alice.wait_for(lambda: alice.rooms[slug].joined_here, 10, "the join")
        await alice.send(slug, "just us")
        await bob.wait_for(lambda: bob.direct_messages, 10, "the direct message")
        assert bob.direct_messages == [(slug, "just us")]
        await bob.start(slug)
        assert bob.rooms[slug].info["name"] == "alice" and "just us" not in bob.bodies(slug)  # backlog 0
    finally:
        await asyncio.gather(alice.stop(), bob.stop())


def test_rooms_shows_where_messages_wait_and_notify_sets_a_rooms_level(server):
    server.manage(
        "shell",
        "--verbosity",
        "0",
        "--command",
        "from chat import services\nservices.room_create(slug='t-unread', name='T')",
    )
    post(server, "t-unread", ["@carol a question for you", "and another thing"], author="bob")
    child = spawn(server, "--user", "carol", "--room", "lobby", env=PASSWORD)
    child.expect_exact("type a message")
    child.sendline("/rooms")
    child.expect_exact("rooms: *#lobby")
    child.expect(r"unread: [^\r\n]*#t-unread 2 \(1 mention\)")
    child.sendline("/notify mute t-unread")
    child.expect_exact("notifications of #t-unread: mute")
    child.sendline("/rooms")
    child.expect(r"#t-unread 2 \(1 mention\) \(muted\)")
    child.sendline("/notify loud")
    child.expect_exact("usage: /notify all|mentions|mute [ROOM]")
    child.sendline("/quit")
    assert finish(child) == 0
    assert "Traceback" not in output(child)
