"""Uploaded files: checking, cleaning and storing one upload, the attachments a message takes,
and the removal of pending uploads no message took (docs/files.md).

An upload is stored through Django's storage API (`STORAGES["default"]`: a folder, or an S3
bucket). The server decides what a file is from its content, never from the name or the type the
client sent: PNG, JPEG, GIF and WebP are decoded with Pillow (its decompression-bomb limit
refuses images with too many pixels), re-encoded without their metadata (EXIF, GPS, comments,
colour profiles: nothing the camera wrote leaves the server) and get one thumbnail, made here
once. Anything else is kept byte for byte and is only ever served as a download.
"""

from __future__ import annotations

import codecs
import functools
import io
import logging
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db import close_old_connections, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from chat.errors import ChatError, ErrorCode
from chat.models import MAX_UPLOAD_NAME_LENGTH, Room, Upload

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 480  # pixels, the longer side
# An animation's frames: each costs a decode and a copy however small it is, so a file of many
# tiny frames is refused before they are all read (a few KB hold tens of thousands of them).
MAX_FRAMES = 1000
# Images one worker process decodes at once (chat.api.files runs the door on this many threads):
# a large one holds a CPU for seconds and about a gigabyte while it is worked on.
IMAGE_WORKERS = 2
FILES_PREFIX = "/files/"  # chat/web/urls.py serves it
# Raster images a browser shows safely: the only types ever served inline.
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
INLINE_TYPES = frozenset(IMAGE_TYPES.values())
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/gzip": ".gz",
    "text/plain": ".txt",
    "application/octet-stream": ".bin",
}


def human_size(size: int) -> str:
    """A size as people read it: "25 MB", "1.5 KB", "900 bytes" (binary units, at most one decimal)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{round(size / scale, 1):g} {unit}"
    return ngettext("%(count)d byte", "%(count)d bytes", size) % {"count": size}


def too_large() -> ChatError:
    limit = settings.CHAT_UPLOAD_MAX_BYTES
    return ChatError(ErrorCode.TOO_LARGE, _("The file is larger than %(limit)s.") % {"limit": human_size(limit)})


def check_quota(*, uploader: User, size: int) -> None:
    """Refuse an upload that would take `uploader` past CHAT_UPLOAD_BYTES_PER_DAY over the last
    24 hours (what their uploads still stored weigh, attached or not; a deleted message's files no
    longer count). Without it, anyone signed in could fill the disk at the API's request rate."""
    limit = settings.CHAT_UPLOAD_BYTES_PER_DAY
    if not limit:
        return
    since = timezone.now() - timedelta(days=1)
    used = Upload.objects.filter(uploader=uploader, created_at__gte=since).aggregate(total=Sum("size"))["total"] or 0
    if used + size > limit:
        raise ChatError(
            ErrorCode.RATE_LIMITED,
            _(
                "You have uploaded %(used)s in the last 24 hours, and this file would pass the limit of %(limit)s: try again later."
            )
            % {"used": human_size(used), "limit": human_size(limit)},
        )


class SizeLimitHandler(FileUploadHandler):
    """First of the request's upload handlers: counts each file's bytes as they arrive and stops
    the upload as soon as one passes CHAT_UPLOAD_MAX_BYTES, so an oversized file is never written
    out whole (the handlers after it close and drop what they had)."""

    def __init__(self, request: Any = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) makes the file


_UNSAFE_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def sanitise_name(raw: str) -> str:
    """A file name to keep and show: the last part of whatever path was sent, NFC, without control
    or format characters (no right-to-left override disguising `gpj.exe`), path separators or
    characters file systems refuse, no leading dots, at most 255 characters with its extension."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".").strip()
    if not name:
        return "file"
    if len(name) > MAX_UPLOAD_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_UPLOAD_NAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_UPLOAD_NAME_LENGTH]
    return name


def _image_format(head: bytes) -> str | None:
    """The image format the first bytes announce (which Pillow must then decode), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def sniff(head: bytes) -> str:
    """The type of a file that is not an image, from its first bytes. HTML, SVG and XML are text
    (text/plain): never served as a page."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "application/zip"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if b"\x00" not in head:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            pass
        else:
            return "text/plain"
    return "application/octet-stream"


@dataclass
class CleanImage:
    data: bytes
    content_type: str
    width: int
    height: int
    thumbnail: bytes
    thumbnail_extension: str


def _refuse(detail: str) -> ChatError:
    return ChatError(ErrorCode.BAD_REQUEST, detail)


def _bare(frame: Image.Image, keep: Iterable[str] = ()) -> Image.Image:
    """A copy of `frame` that carries nothing but pixels (and what `keep` names): no EXIF, XMP,
    ICC profile or comment reaches the encoder."""
    copy = frame.copy()
    copy.info = {key: frame.info[key] for key in keep if key in frame.info}
    return copy


def clean_image(handle: Any, image_format: str) -> CleanImage:
    """Decode the image, refuse it if it does not decode or has too many pixels, and re-encode it
    without metadata (its EXIF orientation applied first), with a thumbnail."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    too_many = _("The image has too many pixels (at most %(limit)s million).") % {"limit": limit // 1_000_000}
    broken = _("The file looks like an image but does not decode.")
    try:
        handle.seek(0)
        with Image.open(handle, formats=[image_format]) as probe:
            width, height = probe.size
            if width * height > limit:
                raise _refuse(too_many)
            probe.verify()
        handle.seek(0)
        with Image.open(handle, formats=[image_format]) as image:
            if getattr(image, "is_animated", False):
                # Counted while read (not `n_frames`, which reads every frame first): the
                # frames' pixels together within the limit, and at most MAX_FRAMES of them.
                sequence: list[Image.Image] = []
                pixels = 0
                for frame in ImageSequence.Iterator(image):
                    pixels += frame.width * frame.height
                    if pixels > limit:
                        raise _refuse(too_many)
                    if len(sequence) == MAX_FRAMES:
                        raise _refuse(
                            _("The animation has too many frames (at most %(limit)s).") % {"limit": MAX_FRAMES}
                        )
                    sequence.append(_bare(frame, keep=("duration", "transparency")))
                first = sequence[0]
                options: dict[str, Any] = {"save_all": True, "append_images": sequence[1:]}
                options["duration"] = [frame.info.get("duration", 100) for frame in sequence]
                if "loop" in image.info:
                    options["loop"] = image.info["loop"]
            else:
                image.load()
                # A new image already (turned upright, or a copy): only its metadata goes, not
                # another full-size copy of it.
                first = ImageOps.exif_transpose(image)
                first.info = {key: image.info[key] for key in ("transparency",) if key in image.info}
                options = {}
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse(too_many) from None
    except ChatError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        raise _refuse(broken) from None
    out = io.BytesIO()
    if image_format == "JPEG":
        if first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
        first.save(out, "JPEG", quality=90)
    else:
        first.save(out, image_format, **options)
    return CleanImage(
        data=out.getvalue(),
        content_type=IMAGE_TYPES[image_format],
        width=first.width,
        height=first.height,
        **_thumbnail(first),
    )


def _thumbnail(image: Image.Image) -> dict[str, Any]:
    # Resized straight from the image (as Image.thumbnail does, but without first copying it
    # whole: a large image's copy is hundreds of MB).
    scale = THUMBNAIL_SIZE / max(image.size)
    thumb = image
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        thumb = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    has_alpha = thumb.mode in ("RGBA", "LA", "PA") or (thumb.mode == "P" and "transparency" in thumb.info)
    if has_alpha:
        thumb.convert("RGBA").save(out, "PNG", optimize=True)
        return {"thumbnail": out.getvalue(), "thumbnail_extension": ".png"}
    thumb.convert("RGB").save(out, "JPEG", quality=85)
    return {"thumbnail": out.getvalue(), "thumbnail_extension": ".jpg"}


def thumbnail_type(upload: Upload) -> str:
    return "image/png" if upload.thumbnail.name.endswith(".png") else "image/jpeg"


def upload_create(*, room: Room, uploader: User, file: File) -> Upload:
    """Check, clean and store one file sent to `room` by `uploader` (who may write there: the
    caller checked). Returns the pending Upload. Raises ChatError(too_large | bad_request)."""
    size = file.size or 0
    if size > settings.CHAT_UPLOAD_MAX_BYTES:
        raise too_large()
    if size == 0:
        raise _refuse(_("The file is empty."))
    check_quota(uploader=uploader, size=size)
    name = sanitise_name(str(file.name or ""))
    file.seek(0)
    head = file.read(8192)
    file.seek(0)
    image_format = _image_format(head)
    key = secrets.token_hex(16)
    folder = f"files/{key[:2]}/{key}"
    stored: list[str] = []
    storage = default_storage
    try:
        if image_format is not None:
            clean = clean_image(file, image_format)
            stored.append(storage.save(folder + _EXTENSIONS[clean.content_type], ContentFile(clean.data)))
            stored.append(storage.save(folder + "-thumb" + clean.thumbnail_extension, ContentFile(clean.thumbnail)))
            upload = Upload(
                room=room,
                uploader=uploader,
                name=name,
                size=len(clean.data),
                content_type=clean.content_type,
                width=clean.width,
                height=clean.height,
            )
            upload.file.name, upload.thumbnail.name = stored
        else:
            content_type = sniff(head)
            stored.append(storage.save(folder + _EXTENSIONS[content_type], file))
            upload = Upload(room=room, uploader=uploader, name=name, size=size, content_type=content_type)
            upload.file.name = stored[0]
        upload.save()
    except BaseException:
        _delete_files(stored)
        raise
    return upload


def upload_wire(upload: Upload) -> dict[str, Any]:
    """An upload as the API and the message objects show it (docs/files.md)."""
    return {
        "id": upload.pk,
        "name": upload.name,
        "size": upload.size,
        "content_type": upload.content_type,
        "url": f"{FILES_PREFIX}{upload.pk}/{quote(upload.name, safe='')}",
        "thumbnail_url": f"{FILES_PREFIX}{upload.pk}/thumbnail/" if upload.thumbnail else None,
        "width": upload.width,
        "height": upload.height,
    }


def attachments_take(*, room: Room, author: User, ids: Sequence[int]) -> list[Upload]:
    """The uploads `ids` names, locked, in that order, if each is one `author` made to `room` and
    no message has taken yet; else ChatError(bad_request). Called with the room's lock held (in the
    transaction that stores the message), so two messages cannot take the same upload."""
    limit = settings.CHAT_UPLOAD_MAX_FILES
    if len(ids) > limit:
        raise ChatError(ErrorCode.BAD_REQUEST, _("A message takes at most %(limit)s files.") % {"limit": limit})
    if len(set(ids)) != len(ids):
        raise ChatError(ErrorCode.BAD_REQUEST, _("The same file is attached twice."))
    found = {upload.pk: upload for upload in Upload.objects.select_for_update().filter(pk__in=ids)}
    for upload_id in ids:
        upload = found.get(upload_id)
        if upload is None or upload.uploader_id != author.pk or upload.room_id != room.pk:
            raise ChatError(
                ErrorCode.BAD_REQUEST,
                _("There is no upload %(id)s of yours in '%(room)s' to attach.") % {"id": upload_id, "room": room.slug},
                room=room.slug,
            )
        if upload.message_id is not None:
            raise ChatError(
                ErrorCode.BAD_REQUEST,
                _("Upload %(id)s is attached to another message already.") % {"id": upload_id},
                room=room.slug,
            )
    return [found[upload_id] for upload_id in ids]


# Removal -------------------------------------------------------------------------------------


def _delete_files(names: Iterable[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except Exception:  # a storage that fails: the row is gone, the file is left (logged)
            logger.warning("Could not delete the stored file %s", name, exc_info=True)


@functools.cache
def _deleter() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat-file-delete")


def files_delete_on_commit(upload: Upload) -> None:
    """An Upload row is being deleted (chat.receivers): its stored files go once that commits.
    From a bucket in the background: a deletion committed by a socket's message delete must not
    hold the worker's shared sync thread for a round trip to S3."""
    names = [upload.file.name, upload.thumbnail.name]
    if settings.CHAT_STORAGE == "s3":
        transaction.on_commit(lambda: _deleter().submit(_delete_files, names), robust=True)
    else:
        transaction.on_commit(lambda: _delete_files(names), robust=True)


def uploads_purge(*, now: datetime | None = None, batch: int = 500) -> int:
    """Delete the uploads no message took within CHAT_UPLOAD_PENDING_HOURS, with their files.
    Each batch locks its rows first, so a send taking one of them at that moment either waits and
    finds it gone (bad_request) or took it first and it is not deleted. Returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.CHAT_UPLOAD_PENDING_HOURS)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Upload.objects.select_for_update()
                .filter(message__isnull=True, created_at__lt=cutoff)
                .values_list("pk", flat=True)[:batch]
            )
            if not ids:
                return total
            Upload.objects.filter(pk__in=ids).delete()
        total += len(ids)


class PurgeRunner(threading.Thread):
    """Runs uploads_purge every CHAT_UPLOAD_PURGE_INTERVAL_SECONDS in a worker: a thread of its
    own, as it blocks on the database and the storage. Every worker may run it: the row locks make
    each upload go once."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="chat-upload-purge", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                removed = uploads_purge()
                if removed:
                    logger.info("Removed %s upload(s) no message took", removed)
            except Exception:
                logger.exception("The upload purge failed")
            finally:
                close_old_connections()

    def stop(self) -> None:
        self.stopping.set()


def start_runner() -> PurgeRunner | None:
    """Start this process's purge, unless CHAT_UPLOAD_PURGE_INTERVAL_SECONDS is 0."""
    interval = settings.CHAT_UPLOAD_PURGE_INTERVAL_SECONDS
    if not interval:
        return None
    runner = PurgeRunner(interval)
    runner.start()
    return runner
