"""Uploaded files, in process: the upload door's limits and types, what an image keeps of its
metadata (nothing), the rules of attaching files to a message, who may download them (and who
stops being able to), and the files' removal with their message or when no message took them."""

import asyncio
import io
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.middleware.csrf import _get_new_csrf_string
from django.test import AsyncClient, Client
from django.utils import timezone
from PIL import Image, PngImagePlugin

from chat import files, services
from chat.errors import ChatError
from chat.models import Message, Upload

# transaction=True: the upload door runs in a thread of its own, with its own database connection,
# which must see what the test made.
pytestmark = pytest.mark.django_db(transaction=True)


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    """Each test stores its files in a folder of its own."""
    root = tmp_path / "uploads"
    root.mkdir()
    settings.CHAT_MEDIA_ROOT = root
    settings.CHAT_STORAGE = "local"
    settings.CHAT_FILES_ACCEL_REDIRECT = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby")


@pytest.fixture
def token(alice) -> str:
    return services.token_create(user=alice, name="test")[1]


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (40, 20), mode: str = "RGB", **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode != "1" else 0).save(out, fmt, **save)
    return out.getvalue()


def upload(client: Client, slug: str, data: bytes, name: str = "file.bin", **extra):
    handle = io.BytesIO(data)
    handle.name = name
    return client.post(f"/api/rooms/{slug}/uploads/", {"file": handle}, **extra)


def send(client: Client, slug: str, payload: dict, **extra):
    return client.post(f"/api/rooms/{slug}/messages/", json.dumps(payload), content_type="application/json", **extra)


def body_of(response) -> bytes:
    """The body a worker sends: downloads stream from an async iterator (read off the event loop)."""
    if not response.streaming:
        return response.content

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


# The upload door ---------------------------------------------------------------------------------


def test_an_image_is_stored_without_exif_or_gps_upright_with_a_thumbnail(alice, lobby, token, media):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; shown rotated 90° clockwise
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 7.5), 3: "E", 4: (13.0, 24.0, 1.0)}  # GPS
    original = image_bytes("JPEG", size=(600, 300), exif=exif.tobytes())
    assert b"SecretCam" in original and Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)

    response = upload(Client(), "lobby", original, name="../../holiday photo.jpg", **bearer(token))
    assert response.status_code == 201, response.content
    data = response.json()
    item = Upload.objects.get()
    assert data == {
        "id": item.pk,
        "name": "holiday photo.jpg",
        "size": item.size,
        "content_type": "image/jpeg",
        "url": f"/files/{item.pk}/holiday%20photo.jpg",
        "thumbnail_url": f"/files/{item.pk}/thumbnail/",
        "width": 300,
        "height": 600,
    }
    kept = (media / item.file.name).read_bytes()
    assert b"Exif" not in kept and b"SecretCam" not in kept
    with Image.open(io.BytesIO(kept)) as image:
        assert image.size == (300, 600) and not image.getexif()
    with Image.open(media / item.thumbnail.name) as thumb:
        assert max(thumb.size) == 480 and thumb.size == (240, 480) and not thumb.getexif()

    # and what a downloader gets is that cleaned copy, inline
    download = Client().get(data["url"], **bearer(token))
    assert download.status_code == 200 and body_of(download) == kept
    assert download["Content-Type"] == "image/jpeg"
    assert download["Content-Disposition"].startswith("inline;")
    assert download["X-Content-Type-Options"] == "nosniff" and download["Cache-Control"] == "private"
    thumb = Client().get(data["thumbnail_url"], **bearer(token), HTTP_ACCEPT="image/avif,image/webp")
    assert thumb.status_code == 200 and body_of(thumb) == (media / item.thumbnail.name).read_bytes()


def test_png_text_and_exif_and_gif_comments_are_stripped_and_animations_keep_their_frames(lobby, token, media):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 52.5N 13.4E")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    png = image_bytes("PNG", mode="RGBA", pnginfo=info, exif=exif.tobytes())
    assert b"52.5N" in png and b"SecretCam" in png
    frames = [Image.new("RGB", (30, 30), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=120, loop=0, comment=b"52.5N")
    gif = out.getvalue()
    assert b"52.5N" in gif and Image.open(io.BytesIO(gif)).n_frames == 3

    for data, name, content_type in ((png, "a.png", "image/png"), (gif, "a.gif", "image/gif")):
        response = upload(Client(), "lobby", data, name=name, **bearer(token))
        assert response.status_code == 201, response.content
        assert response.json()["content_type"] == content_type
        item = Upload.objects.get(pk=response.json()["id"])
        kept = (media / item.file.name).read_bytes()
        assert b"52.5N" not in kept and b"SecretCam" not in kept
    with Image.open(media / item.file.name) as animation:
        assert animation.n_frames == 3 and animation.info.get("duration") == 120


def test_a_file_over_the_limit_is_refused_while_it_arrives_and_nothing_is_stored(settings, lobby, token, media):
    settings.CHAT_UPLOAD_MAX_BYTES = 2 * 1024 * 1024
    response = upload(Client(), "lobby", b"x" * (2 * 1024 * 1024 + 1), **bearer(token))
    assert response.status_code == 413
    assert response.json() == {"code": "too_large", "detail": "The file is larger than 2 MB."}
    # one far over it is refused from its declared length, unread
    response = upload(Client(), "lobby", b"x" * (3 * 1024 * 1024), **bearer(token))
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert not Upload.objects.exists() and stored_files(media) == []
    # exactly the limit passes
    assert upload(Client(), "lobby", b"x" * (2 * 1024 * 1024), **bearer(token)).status_code == 201


def test_a_small_limit_is_told_in_the_unit_people_read(settings, lobby, token, media):
    settings.CHAT_UPLOAD_MAX_BYTES = 2000
    response = upload(Client(), "lobby", b"x" * 2001, **bearer(token))
    assert response.json() == {"code": "too_large", "detail": "The file is larger than 2 KB."}


def test_a_user_may_upload_so_much_a_day_and_a_deleted_messages_files_count_no_more(
    settings, alice, bob, lobby, token, media
):
    settings.CHAT_UPLOAD_BYTES_PER_DAY = 3000
    first = upload(Client(), "lobby", b"a" * 2000, **bearer(token))
    assert first.status_code == 201
    refused = upload(Client(), "lobby", b"b" * 1001, **bearer(token))
    assert refused.status_code == 429
    assert refused.json() == {
        "code": "rate_limited",
        "detail": "You have uploaded 2 KB in the last 24 hours, and this file would pass the limit of 2.9 KB: "
        "try again later.",
    }
    assert Upload.objects.count() == 1 and len(stored_files(media)) == 1
    assert upload(Client(), "lobby", b"c" * 1000, **bearer(token)).status_code == 201  # up to the limit
    bobs = services.token_create(user=bob, name="b")[1]
    assert upload(Client(), "lobby", b"d" * 2000, **bearer(bobs)).status_code == 201  # each user has their own

    message = send(Client(), "lobby", {"body": "", "attachments": [first.json()["id"]]}, **bearer(token)).json()
    services.message_delete_own(room=lobby, author=alice, message_id=message["id"])
    assert upload(Client(), "lobby", b"e" * 2000, **bearer(token)).status_code == 201  # its 2 KB are free again

    old = timezone.now() - timedelta(days=1, seconds=1)
    Upload.objects.filter(uploader=alice).update(created_at=old)
    assert upload(Client(), "lobby", b"f" * 3000, **bearer(token)).status_code == 201  # a day later


def test_a_browser_uploads_with_its_session_and_csrf_token_and_the_limit_holds_there_too(alice, lobby, settings, media):
    """The session's CSRF check reads the form before the view does: the limit applies to that
    read as well."""
    settings.CHAT_UPLOAD_MAX_BYTES = 1024 * 1024
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    secret = _get_new_csrf_string()
    browser.cookies["csrftoken"] = secret
    assert upload(browser, "lobby", b"no token").status_code == 403
    too_big = upload(browser, "lobby", b"x" * (1024 * 1024 + 1), HTTP_X_CSRFTOKEN=secret)
    assert too_big.status_code == 413 and too_big.json()["code"] == "too_large"
    assert not Upload.objects.exists() and stored_files(media) == []
    assert upload(browser, "lobby", b"fine", HTTP_X_CSRFTOKEN=secret).status_code == 201


def test_no_file_an_empty_file_and_a_broken_image_are_bad_requests(lobby, token, media):
    cases = [
        (Client().post("/api/rooms/lobby/uploads/", {"other": "x"}, **bearer(token)), "multipart field 'file'"),
        (upload(Client(), "lobby", b"", **bearer(token)), "The file is empty."),
        (upload(Client(), "lobby", b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, **bearer(token)), "does not decode"),
        (upload(Client(), "lobby", image_bytes("PNG")[:60], **bearer(token)), "does not decode"),
    ]
    for response, detail in cases:
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "bad_request" and detail in response.json()["detail"]
    assert not Upload.objects.exists() and stored_files(media) == []


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # what it is about
def test_a_decompression_bomb_is_refused(lobby, token, media):
    bomb = image_bytes("PNG", size=(10_000, 10_000), mode="1")  # a few KB, 100 million pixels
    assert len(bomb) < 100_000
    response = upload(Client(), "lobby", bomb, name="bomb.png", **bearer(token))
    assert response.status_code == 400
    assert "too many pixels" in response.json()["detail"]
    assert not Upload.objects.exists() and stored_files(media) == []


def test_an_animation_whose_later_frames_grow_past_its_first_is_counted_by_what_it_decodes(
    lobby, token, media, monkeypatch
):
    """A GIF says its canvas is 1×1 and its first frame is, then draws frames far larger (Pillow
    grows the canvas to fit): each of them is decoded at that size, so they are what counts."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)

    def gif_parts(side: int) -> tuple[bytes, bytes]:
        out = io.BytesIO()
        Image.new("P", (side, side), 0).save(out, "GIF")
        data = out.getvalue()
        start = data.index(b"\x2c", 13)
        return data[:start], data[start:-1]

    head, small = gif_parts(1)
    _, large = gif_parts(800)  # 640,000 pixels: under the limit alone, not twice
    control = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    growing = head + control + small + (control + large) * 2 + b"\x3b"
    response = upload(Client(), "lobby", growing, name="grow.gif", **bearer(token))
    assert response.status_code == 400, response.content
    assert "too many pixels" in response.json()["detail"]
    assert not Upload.objects.exists() and stored_files(media) == []


def many_frames_gif(count: int) -> bytes:
    """A GIF of `count` one-pixel frames: a few bytes each, so a small file holds a great many."""
    out = io.BytesIO()
    Image.new("P", (1, 1), 0).save(out, "GIF")
    single = out.getvalue()
    frame = single[single.index(b"\x2c", 13) : -1]  # the image descriptor and its data
    control = b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # a graphic control extension: 10 ms
    return single[: single.index(b"\x2c", 13)] + (control + frame) * count + b"\x3b"


def test_an_animation_of_too_many_frames_is_refused_without_reading_them_all(lobby, token, media):
    """Each frame costs a decode and a copy, however small: a 1 MB GIF of 40,000 one-pixel frames
    must not keep a thread busy (or end in a server error) while they are counted and re-encoded."""
    bomb = many_frames_gif(40_000)
    assert len(bomb) < 1024 * 1024
    started = time.monotonic()
    response = upload(Client(), "lobby", bomb, name="frames.gif", **bearer(token))
    assert response.status_code == 400, response.content
    assert "frames" in response.json()["detail"]
    assert time.monotonic() - started < 2
    assert not Upload.objects.exists() and stored_files(media) == []
    # an ordinary animation still goes through
    assert (
        upload(Client(), "lobby", many_frames_gif(files.MAX_FRAMES), name="ok.gif", **bearer(token)).status_code == 201
    )


async def test_a_worker_decodes_only_a_few_images_at_once(alice, lobby, monkeypatch):
    """A large image takes a second of CPU and a gigabyte while it is decoded: many uploads at once
    must wait their turn, not each get a thread (and the memory) of their own."""
    busy, most = 0, 0
    lock = threading.Lock()
    real = files.clean_image

    def clean_image(*args, **kwargs):
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        try:
            time.sleep(0.3)
            return real(*args, **kwargs)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(files, "clean_image", clean_image)
    token = await database_sync_to_async(lambda: services.token_create(user=alice, name="t")[1])()

    async def one():
        handle = io.BytesIO(image_bytes("PNG"))
        handle.name = "a.png"
        return await AsyncClient().post(
            "/api/rooms/lobby/uploads/", {"file": handle}, headers={"Authorization": f"Bearer {token}"}
        )

    responses = await asyncio.gather(*(one() for _ in range(6)))
    assert [response.status_code for response in responses] == [201] * 6
    assert most <= files.IMAGE_WORKERS


@pytest.mark.parametrize(
    ("content", "name", "content_type"),
    [
        (b"<html><script>alert(document.cookie)</script></html>", "page.html", "text/plain"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.svg", "text/plain"),
        (b"\x00\x01\x02binary\xff\xfe", "data.png", "application/octet-stream"),  # its name lies
        (b"%PDF-1.7\n...", "doc.pdf", "application/pdf"),
    ],
    ids=["html", "svg", "unknown", "pdf"],
)
def test_anything_but_a_verified_image_is_served_as_a_download(lobby, token, content, name, content_type):
    response = upload(Client(), "lobby", content, name=name, **bearer(token))
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["content_type"] == content_type and data["thumbnail_url"] is None and data["width"] is None
    download = Client().get(data["url"], **bearer(token))
    assert download.status_code == 200 and body_of(download) == content
    assert download["Content-Type"] == content_type
    assert download["Content-Disposition"] == f'attachment; filename="{name}"'
    assert download["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in download["Content-Security-Policy"]


def test_a_name_is_cleaned_and_given_back_in_rfc_6266_form(lobby, token):
    weird = "C:\\fakepath\\\u202egpj.exe"  # a path, and a right-to-left override
    data = upload(Client(), "lobby", b"hello", name=weird, **bearer(token)).json()
    assert data["name"] == "gpj.exe"
    data = upload(Client(), "lobby", b"hello", name="résumé 2026.txt", **bearer(token)).json()
    assert data["url"].endswith("/r%C3%A9sum%C3%A9%202026.txt")
    download = Client().get(data["url"], **bearer(token))
    assert download["Content-Disposition"] == "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%202026.txt"


async def test_images_are_worked_on_outside_the_workers_shared_sync_thread(alice, lobby, monkeypatch):
    """The sync thread every socket's database work queues on must not spend a CPU second on an
    image: the door runs in a thread of its own."""
    threads = []
    real = files.clean_image

    def clean_image(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "clean_image", clean_image)
    token = await database_sync_to_async(lambda: services.token_create(user=alice, name="t")[1])()
    handle = io.BytesIO(image_bytes("PNG"))
    handle.name = "a.png"
    response = await AsyncClient().post(
        "/api/rooms/lobby/uploads/", {"file": handle}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.content
    shared = await sync_to_async(threading.current_thread)()  # thread_sensitive: the shared one
    assert len(threads) == 1 and threads[0] is not shared


def test_uploading_needs_the_room_and_credentials(make_room, alice, bob, token):
    make_room("secret", private=True)
    assert upload(Client(), "lobby-nowhere", b"x", **bearer(token)).status_code == 404
    assert upload(Client(), "secret", b"x", **bearer(token)).json()["code"] == "forbidden"
    assert upload(Client(), "secret", b"x").status_code == 401
    assert not Upload.objects.exists()


def test_the_upload_door_is_in_the_openapi_description(token):
    schema = Client().get("/api/schema/").json()
    door = schema["paths"]["/api/rooms/{slug}/uploads/"]["post"]
    assert "multipart/form-data" in door["requestBody"]["content"]
    assert set(door["responses"]) >= {"201", "400", "401", "403", "404", "413", "429"}
    message = schema["components"]["schemas"]["Message"]
    assert "attachments" in message["properties"]


# Attaching --------------------------------------------------------------------------------------


def test_a_message_takes_its_senders_files_once(alice, bob, lobby, make_room, token, settings):
    settings.CHAT_UPLOAD_MAX_FILES = 2
    mine = [upload(Client(), "lobby", f"file {n}".encode(), name=f"{n}.txt", **bearer(token)).json() for n in (1, 2, 3)]
    bob_token = services.token_create(user=bob, name="b")[1]
    theirs = upload(Client(), "lobby", b"bob's", **bearer(bob_token)).json()
    make_room("other")
    elsewhere = upload(Client(), "other", b"other room", **bearer(token)).json()

    refusals = [
        ([theirs["id"]], "no upload"),
        ([elsewhere["id"]], "no upload"),
        ([mine[0]["id"], mine[0]["id"]], "twice"),
        ([m["id"] for m in mine], "at most 2 files"),
        ([999_999], "no upload"),
    ]
    for ids, detail in refusals:
        response = send(Client(), "lobby", {"body": "", "attachments": ids}, **bearer(token))
        assert response.status_code == 400, ids
        assert response.json()["code"] == "bad_request" and detail in response.json()["detail"].lower(), ids
    assert not Message.objects.exists() and not Upload.objects.filter(message__isnull=False).exists()
    assert send(Client(), "lobby", {"body": "  "}, **bearer(token)).json()["detail"] == "'body': The message is empty."

    response = send(Client(), "lobby", {"body": "", "attachments": [mine[1]["id"], mine[0]["id"]]}, **bearer(token))
    assert response.status_code == 201, response.content
    message = response.json()
    assert message["body"] == "" and message["attachments"] == [mine[1], mine[0]]
    assert set(Upload.objects.filter(message_id=message["id"]).values_list("pk", flat=True)) == {
        mine[0]["id"],
        mine[1]["id"],
    }
    history = Client().get("/api/rooms/lobby/messages/", **bearer(token)).json()["messages"]
    assert history[-1]["attachments"] == [mine[1], mine[0]]
    # taken: not again
    again = send(Client(), "lobby", {"body": "again", "attachments": [mine[0]["id"]]}, **bearer(token))
    assert again.status_code == 400 and "another message" in again.json()["detail"]
    assert Message.objects.count() == 1
    # a retry of the send (same client_id) gets the first message back, as any retry does
    first = send(Client(), "lobby", {"body": "", "attachments": [mine[2]["id"]], "client_id": "f1"}, **bearer(token))
    retry = send(Client(), "lobby", {"body": "", "attachments": [mine[2]["id"]], "client_id": "f1"}, **bearer(token))
    assert first.status_code == retry.status_code == 201 and retry.json() == first.json()
    assert Message.objects.count() == 2
    # and a message without files still has the field
    plain = send(Client(), "lobby", {"body": "hi"}, **bearer(token)).json()
    assert plain["attachments"] == []


def test_a_retried_send_with_files_from_someone_no_longer_let_in_is_refused(alice, bob, make_room, token):
    """The retry of a send with files answers with the first message only to someone who may still
    write in the room: a banned or removed author learns nothing of it since (its reactions, its
    thread), and gets the refusal any send of theirs gets."""
    room = make_room("team", private=True, created_by=bob)
    services.membership_add(room=room, user=alice)
    item = upload(Client(), "team", b"plan", name="plan.txt", **bearer(token)).json()
    first = send(Client(), "team", {"body": "", "attachments": [item["id"]], "client_id": "f1"}, **bearer(token))
    assert first.status_code == 201, first.content
    services.member_remove(room=room, user=alice, by=bob)
    retry = send(Client(), "team", {"body": "", "attachments": [item["id"]], "client_id": "f1"}, **bearer(token))
    assert retry.status_code == 403 and retry.json()["code"] == "forbidden", retry.content
    # nor when the removal lands between the door's check and the send (a socket that has not yet
    # heard it was removed): the send itself refuses
    with pytest.raises(ChatError) as refused:
        services.message_send(room=room, author=alice, body="", client_id="f1", attachments=[item["id"]])
    assert refused.value.code == "forbidden"


async def test_a_socket_send_takes_files_and_everyone_in_the_room_sees_them(alice, bob, lobby, connect):
    token = await database_sync_to_async(lambda: services.token_create(user=alice, name="t")[1])()
    data = await database_sync_to_async(lambda: upload(Client(), "lobby", b"notes", name="n.txt", **bearer(token)))()
    item = data.json()
    sender, watcher = await connect(alice), await connect(bob)
    await sender.join("lobby")
    await watcher.join("lobby")
    ack = await sender.request("send", room="lobby", body="", attachments=[item["id"]], client_id="c1")
    assert ack["type"] == "ack", ack
    seen = await watcher.expect("message")
    assert seen["message"]["attachments"] == [item] and seen["message"]["body"] == ""
    error = await sender.request("send", room="lobby", body="x", attachments=["1"])
    assert error["type"] == "error" and error["code"] == "bad_request"
    error = await sender.request("send", room="lobby", body="x", attachments=[item["id"]])
    assert error["code"] == "bad_request" and "another message" in error["detail"]
    error = await sender.request("send", room="lobby", body="")
    assert error["code"] == "bad_request"  # no files: an empty body is still refused


# Downloading ------------------------------------------------------------------------------------


def sent_file(room, author, content: bytes = b"private notes", name: str = "notes.txt") -> dict:
    client = Client()
    client.force_login(author)
    item = upload(client, room.slug, content, name=name).json()
    services.message_send(room=room, author=author, body="here", attachments=[item["id"]])
    return item


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_who_may_download_follows_who_may_read_the_room(alice, bob, make_user, make_room):
    carol, dave = make_user("carol"), make_user("dave")
    staff = make_room("staff", private=True, created_by=alice)
    for user in (bob, carol):
        services.membership_add(room=staff, user=user)
    item = sent_file(staff, alice, content=image_bytes("PNG"), name="plan.png")
    paths = [item["url"], item["thumbnail_url"]]
    for path in paths:
        assert logged_in(bob).get(path).status_code == 200
        assert logged_in(dave).get(path).status_code == 404  # not a member: as if it did not exist
        logged_out = Client().get(path)
        assert logged_out.status_code == 401 and logged_out.json()["code"] == "unauthorized"
        assert Client().get(path, **bearer("chat_wrong")).status_code == 401
        assert Client().get(path, **bearer(services.token_create(user=carol, name="c")[1])).status_code == 200
    assert logged_in(bob).get(f"/files/{item['id'] + 1000}/x").status_code == 404
    assert logged_in(bob).get(f"/files/{10**30}/x").json()["code"] == "not_found"
    assert logged_in(bob).get("/files/-5/x").json()["code"] == "not_found"  # not an id: JSON, not the page

    services.ban_create(room=staff, user=bob)
    services.member_remove(room=staff, user=carol, by=alice)
    for path in paths:
        assert logged_in(bob).get(path).status_code == 404
        assert logged_in(carol).get(path).status_code == 404
        assert logged_in(alice).get(path).status_code == 200


def test_a_direct_conversations_files_are_its_members_alone(alice, bob, make_user):
    carol = make_user("carol")
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    item = sent_file(room, alice)
    assert logged_in(bob).get(item["url"]).status_code == 200
    assert logged_in(carol).get(item["url"]).status_code == 404


def test_a_pending_upload_is_its_uploaders_alone(alice, bob, lobby):
    item = upload(logged_in(alice), "lobby", b"draft").json()
    assert logged_in(alice).get(item["url"]).status_code == 200
    assert logged_in(bob).get(item["url"]).status_code == 404


def test_behind_nginx_the_worker_only_authorizes(alice, lobby, settings):
    settings.CHAT_FILES_ACCEL_REDIRECT = "/_protected/"
    item = sent_file(lobby, alice, content=image_bytes("PNG"), name="a.png")
    stored = Upload.objects.get()
    response = logged_in(alice).get(item["url"])
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == "/_protected/" + stored.file.name
    assert response["Content-Type"] == "image/png" and response["Content-Disposition"].startswith("inline;")
    assert response["X-Content-Type-Options"] == "nosniff"


# Removal ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["own", "moderator", "admin"])
def test_deleting_a_message_removes_its_files(alice, bob, make_room, media, how, django_capture_on_commit_callbacks):
    room = make_room("team", private=True, created_by=bob)
    services.membership_add(room=room, user=alice)
    item = sent_file(room, alice, content=image_bytes("PNG"), name="a.png")
    message = Message.objects.get()
    assert len(stored_files(media)) == 2  # the image and its thumbnail
    with django_capture_on_commit_callbacks(execute=True):
        if how == "own":
            services.message_delete_own(room=room, author=alice, message_id=message.pk)
        elif how == "moderator":
            services.message_remove(room=room, user=bob, message_id=message.pk)
        else:
            services.message_delete(message=message)
    assert stored_files(media) == [] and not Upload.objects.exists()
    assert logged_in(alice).get(item["url"]).status_code == 404
    history = logged_in(alice).get("/api/rooms/team/messages/").json()["messages"]
    assert history[0]["deleted"] and history[0]["attachments"] == []


def test_purge_uploads_removes_only_old_pending_ones(alice, lobby, media, django_capture_on_commit_callbacks):
    sent_file(lobby, alice, name="sent.txt")
    old = upload(logged_in(alice), "lobby", b"old draft", name="old.txt").json()
    upload(logged_in(alice), "lobby", b"new draft", name="new.txt")
    Upload.objects.filter(message__isnull=False).update(created_at=timezone.now() - timedelta(days=3))
    Upload.objects.filter(pk=old["id"]).update(created_at=timezone.now() - timedelta(hours=25))
    assert len(stored_files(media)) == 3
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_uploads", stdout=out)
    assert out.getvalue().strip() == "Removed 1 pending upload(s)."
    assert sorted(Upload.objects.values_list("name", flat=True)) == ["new.txt", "sent.txt"]
    assert len(stored_files(media)) == 2


def test_each_worker_purges_pending_uploads_on_its_own(alice, lobby, media, settings):
    settings.CHAT_UPLOAD_PURGE_INTERVAL_SECONDS = 0
    assert files.start_runner() is None  # 0: the command from cron instead
    old = upload(logged_in(alice), "lobby", b"old draft").json()
    Upload.objects.filter(pk=old["id"]).update(created_at=timezone.now() - timedelta(days=2))
    runner = files.PurgeRunner(0.05)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while Upload.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
        runner.join(5)
    assert not Upload.objects.exists() and stored_files(media) == []


def test_deleting_a_room_removes_its_files(alice, lobby, media, django_capture_on_commit_callbacks):
    sent_file(lobby, alice)
    upload(logged_in(alice), "lobby", b"pending")
    assert len(stored_files(media)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        services.room_delete(room=lobby)
    assert stored_files(media) == [] and not Upload.objects.exists()


def test_staff_see_uploads_in_the_admin_and_deleting_one_there_takes_it_off_its_message(
    alice, lobby, media, make_user, django_capture_on_commit_callbacks
):
    admin = make_user("boss", is_staff=True, is_superuser=True)
    item = sent_file(lobby, alice)
    staff = logged_in(admin)
    listing = staff.get("/admin/chat/upload/?message__isempty=0")
    assert listing.status_code == 200 and b"notes.txt" in listing.content
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/admin/chat/upload/{item['id']}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert stored_files(media) == [] and Message.objects.get().attachments == []


def test_staff_deleting_a_file_takes_it_off_its_message(alice, lobby, media, django_capture_on_commit_callbacks):
    item = sent_file(lobby, alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.upload_delete(upload=Upload.objects.get())
    assert stored_files(media) == []
    assert Message.objects.get().attachments == []
    assert logged_in(alice).get(item["url"]).status_code == 404
