"""Files and search in the terminal client (`python -m clients.terminal`), in a pseudo-terminal
against a real Daphne worker: `/upload PATH [TEXT]` uploads over HTTP with the client's own
credentials (the session of its login, or an API token) and sends the message; files show under a
message as `[name (size)] <absolute url>`; `/search` prints room, author, time and body, and
pages further back. The other person is a plain `websockets` connection."""

from __future__ import annotations

import re
import tempfile
import urllib.request

import pytest

from tests.e2e.test_client import Party, post
from tests.support.daphne_server import DaphneServer
from tests.support.terminal import ID, PASSWORD, TIME, finish, output, spawn

LIMIT = 100_000  # bytes: the worker's CHAT_UPLOAD_MAX_BYTES here


@pytest.fixture(scope="module")
def server():
    media = tempfile.mkdtemp(prefix="chat-media-")
    with DaphneServer(env={"CHAT_MEDIA_ROOT": media, "CHAT_UPLOAD_MAX_BYTES": str(LIMIT)}) as daphne:
        yield daphne


def download(url: str, cookie: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers={"Cookie": cookie}), timeout=10) as response:
        return response.read()


def test_upload_sends_the_file_and_everyone_gets_a_working_link(server, tmp_path):
    notes = tmp_path / "meeting notes.txt"
    notes.write_text("agenda\n" * 200)  # 1400 bytes: 1.4 KB
    with Party(server, "bob", "lobby") as bob:
        child = spawn(server, "--user", "alice", "--room", "lobby", "--backlog", "0", env=PASSWORD)
        child.expect_exact("type a message")
        child.sendline(f'/upload "{notes}" the notes from today')
        message = bob.expect_message("lobby", "the notes from today")
        assert message["author"] == "alice"
        (attachment,) = message["attachments"]
        assert attachment["name"] == "meeting notes.txt" and attachment["size"] == 1400

        url = f"{server.base_url}{attachment['url']}"
        # Its own message, with the file under it as an absolute link.
        child.expect(ID + TIME + r"alice: the notes from today\r\n +\[meeting notes\.txt \(1\.4 KB\)\] (\S+)\r\n")
        assert child.match.group(1) == url
        assert download(url, server.login("bob")) == notes.read_bytes()

        # A file alone, no text; the next line is the client's own echo again.
        child.sendline(f"/upload {tmp_path / 'missing.txt'}")
        child.expect(r"Cannot read .*missing\.txt")
        big = tmp_path / "big.bin"
        big.write_bytes(b"z" * (LIMIT + 1))
        child.sendline(f"/upload {big} too much")
        child.expect(r"big\.bin was not uploaded: The file is larger than 97\.7 KB\.")
        child.sendline("/quit")
        assert finish(child) == 0
    assert "Traceback" not in output(child)
    assert "too much" not in output(child)  # refused: no message went


def test_upload_with_an_api_token_and_files_of_others_show_as_links(server, tmp_path):
    token = server.manage("create_token", "alice").stdout.strip().splitlines()[-1]
    image = tmp_path / "dot.gif"
    # A 1 x 1 GIF.
    image.write_bytes(
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    with Party(server, "bob", "random") as bob:
        watcher = spawn(server, "--user", "carol", "--room", "random", "--backlog", "0", env=PASSWORD)
        watcher.expect_exact("type a message")
        child = spawn(server, "--token", token, "--room", "random", "--backlog", "0")
        child.expect_exact("type a message")
        child.sendline(f"/upload {image}")
        message = bob.expect_message("random", "")
        (attachment,) = message["attachments"]
        assert attachment["content_type"] == "image/gif" and attachment["thumbnail_url"]
        # Someone else's client: the file under alice's (empty) message.
        watcher.expect(
            ID + TIME + r"alice: \r\n +\[dot\.gif \(\d+ bytes\)\] " + re.escape(server.base_url) + r"/files/"
        )
        for client in (child, watcher):
            client.sendline("/quit")
            assert finish(client) == 0


def test_search_prints_room_author_time_and_body_and_pages_back(server):
    post(server, "lobby", ["明天的会议改到三点"], author="alice")
    post(server, "random", [f"search probe {n:02d}" for n in range(25)], author="bob")
    child = spawn(server, "--user", "carol", "--room", "lobby", "--backlog", "0", env=PASSWORD)
    child.expect_exact("type a message")

    child.sendline("/search 会议")
    child.expect_exact("1 message with '会议', newest first:")
    child.expect(r"#lobby #\d+ \[\w{3} \d\d \w{3} \d{4} \d\d:\d\d\] alice: 明天的会议改到三点\r\n")

    child.sendline("/search PROBE in:#random from:@bob")
    child.expect_exact("20 messages with 'PROBE', newest first:")
    child.expect(r"#random #\d+ \[[^\]]+\] bob: search probe 24\r\n")
    child.expect(r"bob: search probe 05\r\n")
    child.expect_exact("more results: /search again")
    child.sendline("/search")
    child.expect_exact("5 messages with 'PROBE', newest first:")
    child.expect(r"bob: search probe 04\r\n")
    child.expect(r"bob: search probe 00\r\n")

    child.sendline("/search probe from:@alice")
    child.expect_exact("no messages match 'probe'")
    child.sendline("/search in:#random")
    child.expect_exact("usage: /search TEXT")
    child.sendline("/help")
    child.expect_exact("/upload PATH [TEXT]")
    child.expect_exact("/search TEXT")
    child.sendline("/quit")
    assert finish(child) == 0
    assert "Traceback" not in output(child)
