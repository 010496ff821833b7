"""The terminal client (`python -m clients.terminal`) against a real Daphne worker.

Interactive runs happen in a pseudo-terminal (pexpect), as a person would use the client; the
non-interactive `--send` runs also with piped standard input, as cron and bots use it. The second
party is a plain `websockets` connection logged in through the real login form. The client runs
without DJANGO_SETTINGS_MODULE: it must not need Django. Every wait is bounded (10 s).
"""

from __future__ import annotations

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

from tests.support.daphne_server import REPO_ROOT, DaphneServer, free_port
from tests.support.terminal import PASSWORD, TIME, WAIT, client_env, finish, output, spawn


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

    def say(self, room: str, body: str) -> None:
        client_id = uuid.uuid4().hex
        self.frame("send", room=room, body=body, client_id=client_id)
        self.expect(lambda f: f["type"] == "ack" and f["client_id"] == client_id, f"ack for {body!r}")

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
        # Joining shows the latest 20 (--backlog), oldest first, as `[HH:MM] author: body`.
        assert re.search(TIME + r"carol: old 40\n(.*\n)*" + TIME + r"carol: old 59\n", shown), shown
        assert "old 39" not in shown

        bob.say("lobby", "hello alice")
        child.expect(TIME + "bob: hello alice")
        bob.say("lobby", "two\nlines")
        child.expect(r"bob: two\r\n {8}lines\r\n")

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


# Non-interactive --------------------------------------------------------------------------------


def test_send_posts_one_message_and_exits(server):
    with Party(server, "bob", "lobby") as bob:
        child = spawn(server, "--user", "alice", "--room", "lobby", "--send", "deploy done", env=PASSWORD)
        assert finish(child) == 0
        assert re.fullmatch(r"Sent message #\d+ to lobby\.\n", output(child)), output(child)
        assert bob.expect_message("lobby", "deploy done")["author"] == "alice"

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
