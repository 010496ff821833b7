"""Downloads of uploaded files: /files/<id>/<name> and /files/<id>/thumbnail/ (docs/files.md).

Whoever asks must be signed in (the session, or `Authorization: Bearer <token>` as in the API)
and may read the file's room now, by the rule history follows (chat.selectors.room_access_check):
a ban or a removal from a private room takes the files away with the messages. A file no message
has taken yet is its uploader's alone. Anyone else gets 404, whether or not the file exists.

How the bytes leave: with local storage the worker streams them, or, with
CHAT_FILES_ACCEL_REDIRECT, answers with only the headers and `X-Accel-Redirect` and nginx sends
the file from the shared folder; with S3 storage the answer is a redirect (302) to an address of
the object signed for CHAT_S3_URL_SECONDS, whose headers S3 sets as asked here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from rest_framework import exceptions
from rest_framework.request import Request

from chat import files
from chat.api.authentication import BearerTokenAuthentication
from chat.errors import ChatError, ErrorCode
from chat.models import Upload
from chat.selectors import room_access_check

CHUNK_BYTES = 64 * 1024
# Even should a browser be talked into rendering a file as a page, it runs nothing and reaches nothing.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def _error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _caller(request: HttpRequest) -> User | JsonResponse:
    """The signed-in user (a bearer token first, as the API takes it), or the refusal."""
    if request.META.get("HTTP_AUTHORIZATION"):
        try:
            found = BearerTokenAuthentication().authenticate(Request(request))
        except exceptions.Throttled as error:
            return _error(ErrorCode.RATE_LIMITED, str(error.detail), 429)
        except exceptions.AuthenticationFailed as error:
            return _error(ErrorCode.UNAUTHORIZED, str(error.detail), 401)
        if found is not None:
            return found[0]
    if request.user.is_authenticated:
        return request.user
    return _error(ErrorCode.UNAUTHORIZED, _("Sign in to download files."), 401)


def _readable(upload_id: int, user: User) -> Upload | None:
    upload = Upload.objects.select_related("room").filter(pk=upload_id).first()
    if upload is None or (upload.message_id is None and upload.uploader_id != user.pk):
        return None
    try:
        room_access_check(room=upload.room, user=user)
    except ChatError:
        return None
    return upload


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The file in pieces, read off the event loop: the worker holds one piece at a time."""
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


def _serve(request: HttpRequest, field: FieldFile, *, content_type: str, disposition: str, size: int | None) -> Any:
    name = field.name or ""
    if settings.CHAT_STORAGE == "s3":
        url = default_storage.url(  # type: ignore[call-arg]
            name,
            parameters={
                "ResponseContentType": content_type,
                "ResponseContentDisposition": disposition,
                "ResponseCacheControl": "private",
            },
            expire=settings.CHAT_S3_URL_SECONDS,
        )
        response: HttpResponseBase = HttpResponseRedirect(url)
    elif settings.CHAT_FILES_ACCEL_REDIRECT:
        response = HttpResponse(b"", content_type=content_type)
        response["X-Accel-Redirect"] = settings.CHAT_FILES_ACCEL_REDIRECT + quote(name)
    else:
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            return _error(ErrorCode.NOT_FOUND, _("No such file."), 404)
        response = StreamingHttpResponse(_chunks(handle), content_type=content_type)
        if size is not None:
            response["Content-Length"] = str(size)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private"
    response["Content-Security-Policy"] = FILE_CSP
    return response


@require_safe
def download(request: HttpRequest, upload_id: int, name: str) -> Any:
    user = _caller(request)
    if isinstance(user, JsonResponse):
        return user
    upload = _readable(upload_id, user)
    if upload is None:
        return _error(ErrorCode.NOT_FOUND, _("No such file."), 404)
    inline = upload.content_type in files.INLINE_TYPES
    disposition = content_disposition_header(not inline, upload.name) or "attachment"
    return _serve(request, upload.file, content_type=upload.content_type, disposition=disposition, size=upload.size)


@require_safe
def thumbnail(request: HttpRequest, upload_id: int) -> Any:
    user = _caller(request)
    if isinstance(user, JsonResponse):
        return user
    upload = _readable(upload_id, user)
    if upload is None or not upload.thumbnail:
        return _error(ErrorCode.NOT_FOUND, _("No such file."), 404)
    content_type = files.thumbnail_type(upload)
    extension = ".png" if content_type == "image/png" else ".jpg"
    disposition = content_disposition_header(False, "thumbnail" + extension) or "inline"
    return _serve(request, upload.thumbnail, content_type=content_type, disposition=disposition, size=None)
