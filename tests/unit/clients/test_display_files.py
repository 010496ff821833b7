"""clients.display and clients.terminal for files and search: a message's attachments as
`[name (size)] <absolute url>` lines, search results, and the arguments of /upload and /search."""

from typing import Any

import pytest

from clients.display import attachment_lines, format_message, format_search_result, format_thread_line, human_size
from clients.terminal import parse_search, split_path
from clients.uploads import cookie_value, multipart

AT = "2026-12-01T20:05:00Z"
BASE = "https://chat.example.com"
PNG = {
    "id": 7,
    "name": "shot.png",
    "size": 1_258_291,
    "content_type": "image/png",
    "url": "/files/7/shot.png",
    "thumbnail_url": "/files/7/thumbnail/",
    "width": 800,
    "height": 600,
}
NOTES = {**PNG, "id": 8, "name": "notes.txt", "size": 12, "content_type": "text/plain", "url": "/files/8/notes.txt"}


def message(body: str = "look", **fields: Any) -> dict[str, Any]:
    return {"id": 12, "seq": 3, "author": "alice", "body": body, "created_at": AT, "edited_at": None, **fields}


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (1_258_291, "1.2 MB"),
        (250 * 1024 * 1024, "250 MB"),
        ("x", "?"),
    ],
)
def test_sizes_read_as_people_write_them(size, shown):
    assert human_size(size) == shown


def test_files_show_under_the_body_with_absolute_links():
    text = format_message(message(attachments=[PNG, NOTES]), base=BASE)
    lines = text.split("\n")
    assert lines[0].endswith("alice: look")
    assert lines[1].strip() == "[shot.png (1.2 MB)] https://chat.example.com/files/7/shot.png"
    assert lines[2].strip() == "[notes.txt (12 bytes)] https://chat.example.com/files/8/notes.txt"


def test_a_message_of_files_only_and_a_deleted_one():
    assert format_message(message("", attachments=[NOTES]), base=BASE).split("\n")[1].strip().startswith("[notes.txt")
    assert attachment_lines(message(deleted=True, attachments=[NOTES])) == []
    assert "(deleted)" in format_message(message(deleted=True, attachments=[NOTES]))


def test_a_file_name_cannot_reach_the_terminal_with_control_characters():
    (line,) = attachment_lines(message(attachments=[{**NOTES, "name": "a\x1b[2Jb\nc.txt"}]), BASE)
    assert "\x1b" not in line and "\n" not in line


def test_a_reply_of_files_only_names_its_first_file():
    line = format_thread_line(message("", reply_to=3, attachments=[NOTES]))
    assert line.endswith("alice: [notes.txt (12 bytes)]")


def test_a_search_result_names_room_author_time_and_body():
    text = format_search_result(message("明天的会议\n改到三点", attachments=[NOTES]), "#lobby", base=BASE)
    first, files = text.split("\n")
    assert first.startswith("#lobby #12 [")
    assert first.endswith("alice: 明天的会议 改到三点")
    assert files.strip() == "[notes.txt (12 bytes)] https://chat.example.com/files/8/notes.txt"


def test_upload_and_search_arguments():
    assert split_path("notes.txt here you go") == ("notes.txt", "here you go")
    assert split_path('"my notes.txt" here') == ("my notes.txt", "here")
    assert split_path("notes.txt") == ("notes.txt", "")
    assert parse_search("会议 in:#lobby from:@alice") == ("会议", "lobby", "alice")
    assert parse_search("in:lobby") == ("", "lobby", None)


def test_the_multipart_body_and_the_csrf_cookie():
    body, content_type = multipart("file", 'a "b".txt', "text/plain", b"hi")
    boundary = content_type.split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert b'filename="a %22b%22.txt"' in body
    assert body.endswith(f"\r\n\r\nhi\r\n--{boundary}--\r\n".encode())
    assert cookie_value("csrftoken=abc; sessionid=xyz", "csrftoken") == "abc"
    assert cookie_value("sessionid=xyz", "csrftoken") is None
