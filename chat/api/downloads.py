"""Downloads of uploaded files: GET /files/<id>/<name> and /files/<id>/thumbnail/ (docs/files.md).

Whoever asks must be signed in (a bearer token or the session, as everywhere in the API) and may
read the file's room now, by the rule history follows (chat.selectors.room_access_check): a ban
or a removal from a private room takes the files away with the messages. A file no message has
taken yet is its uploader's alone. Anyone else gets 404, whether or not the file exists.

How the bytes leave: with local storage the worker streams them (read off the event loop), or,
with CHAT_FILES_ACCEL_REDIRECT, answers with only the headers and `X-Accel-Redirect` and nginx
sends the file from the shared folder; with S3 storage the answer is a redirect (302) to an
address of the object signed for CHAT_S3_URL_SECONDS, whose headers S3 sets as asked here.

DRF views, for their authentication, their JSON errors and the OpenAPI description; what they
answer on success is the file, whatever the client's Accept header says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import IO, Any
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from chat import files
from chat.api.serializers import ErrorSerializer
from chat.api.views import AuthenticatedRequest
from chat.errors import ChatError, ErrorCode
from chat.models import Upload
from chat.realtime.protocol import MAX_SEQ
from chat.selectors import room_access_check

CHUNK_BYTES = 64 * 1024
# Even should a browser be talked into rendering a file as a page, it runs nothing and reaches nothing.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


class AnyAccept(BaseContentNegotiation):
    """A file is what it is: an `<img>`'s `Accept: image/*` must not get 406. (Errors are JSON.)"""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return None


def _not_found() -> ChatError:
    return ChatError(ErrorCode.NOT_FOUND, "No such file.")


def _readable(upload_id: int, request: AuthenticatedRequest) -> Upload:
    user = request.user
    if upload_id > MAX_SEQ:  # no such id, and more than the database's integers hold
        raise _not_found()
    upload = Upload.objects.select_related("room").filter(pk=upload_id).first()
    if upload is None or (upload.message_id is None and upload.uploader_id != user.pk):
        raise _not_found()
    try:
        room_access_check(room=upload.room, user=user)
    except ChatError:
        raise _not_found() from None
    return upload


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The file in pieces, read off the event loop: the worker holds one piece at a time."""
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


def _serve(field: FieldFile, *, content_type: str, disposition: str, size: int | None) -> HttpResponseBase:
    name = field.name or ""
    response: HttpResponseBase
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
        response = HttpResponseRedirect(url)
    elif settings.CHAT_FILES_ACCEL_REDIRECT:
        response = HttpResponse(b"", content_type=content_type)
        response["X-Accel-Redirect"] = settings.CHAT_FILES_ACCEL_REDIRECT + quote(name)
    else:
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise _not_found() from None
        response = StreamingHttpResponse(_chunks(handle), content_type=content_type)
        if size is not None:
            response["Content-Length"] = str(size)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private"
    response["Content-Security-Policy"] = FILE_CSP
    return response


UPLOAD_ID = OpenApiParameter("upload_id", int, OpenApiParameter.PATH, description="The upload's id.")
FILE_RESPONSES = {
    (200, "*/*"): OpenApiResponse(
        OpenApiTypes.BINARY,
        description="The file: `inline` if a verified image, else `attachment`; `nosniff`, `private`.",
    ),
    302: OpenApiResponse(description="With S3 storage: to an address of the file signed for a minute."),
    401: ErrorSerializer,
    404: ErrorSerializer,
}


class FileDownloadView(APIView):
    content_negotiation_class = AnyAccept
    # Reads of a few rows each, and a page with many images asks for many at once: the per-user
    # request rate is for the API's other doors.
    throttle_classes: list[Any] = []

    @extend_schema(
        summary="Download a file sent in a room you may read",
        parameters=[
            UPLOAD_ID,
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="The file's name (not checked)."),
        ],
        responses=FILE_RESPONSES,
    )
    def get(self, request: AuthenticatedRequest, upload_id: int, name: str) -> HttpResponseBase:
        upload = _readable(upload_id, request)
        inline = upload.content_type in files.INLINE_TYPES
        disposition = content_disposition_header(not inline, upload.name) or "attachment"
        return _serve(upload.file, content_type=upload.content_type, disposition=disposition, size=upload.size)


class ThumbnailView(APIView):
    content_negotiation_class = AnyAccept
    throttle_classes: list[Any] = []

    @extend_schema(
        summary="An image's thumbnail (at most 480 pixels on its longer side)",
        parameters=[UPLOAD_ID],
        responses=FILE_RESPONSES,
    )
    def get(self, request: AuthenticatedRequest, upload_id: int) -> HttpResponseBase:
        upload = _readable(upload_id, request)
        if not upload.thumbnail:
            raise _not_found()
        content_type = files.thumbnail_type(upload)
        extension = ".png" if content_type == "image/png" else ".jpg"
        disposition = content_disposition_header(False, "thumbnail" + extension) or "inline"
        return _serve(upload.thumbnail, content_type=content_type, disposition=disposition, size=None)
