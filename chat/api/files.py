"""POST /api/rooms/<slug>/uploads/: one file (multipart field `file`) to send with a message
later (`attachments` on `send` or POST .../messages/). The work is in chat.files.

Decoding and re-encoding an image takes a CPU for a good part of a second. Django runs sync views
in the worker's one sync thread, the one every socket's database work queues on
(docs/performance.md): an upload there would hold up every send on the worker. So the door is an
async view that runs the DRF view in a thread of its own (`upload_door`).
"""

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import files, selectors
from chat.api.serializers import ERRORS, AttachmentSerializer, UploadRequestSerializer
from chat.api.views import SLUG, AuthenticatedRequest
from chat.errors import ChatError, ErrorCode

# What a multipart body may carry besides the file itself (its boundaries and part headers).
ENVELOPE_BYTES = 64 * 1024


class UploadView(APIView):
    parser_classes = [MultiPartParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before anything reads the body (the session's CSRF check reads the form): the size
        # limit applies while the file arrives, not once it has been written out.
        # A body that declares itself larger than any upload may be is refused unread.
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > settings.CHAT_UPLOAD_MAX_BYTES + ENVELOPE_BYTES:
            raise files.too_large()
        self.guard = files.SizeLimitHandler(request._request, limit=settings.CHAT_UPLOAD_MAX_BYTES)
        request._request.upload_handlers = [self.guard, *request._request.upload_handlers]
        super().initial(request, *args, **kwargs)

    @extend_schema(
        summary="Upload a file to send with a message (pending until a message takes it)",
        parameters=[SLUG],
        request={"multipart/form-data": UploadRequestSerializer},
        responses={201: AttachmentSerializer, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = selectors.room_get_for(slug=slug, user=request.user)
        upload = request.FILES.get("file")
        if self.guard.exceeded:
            raise files.too_large()
        if upload is None:
            raise ChatError(ErrorCode.BAD_REQUEST, _("Send the file as the multipart field 'file'."), room=slug)
        stored = files.upload_create(room=room, uploader=request.user, file=upload)
        return Response(files.upload_wire(stored), status=status.HTTP_201_CREATED)


_upload_view = UploadView.as_view()


@csrf_exempt  # as DRF's views are: SessionAuthentication checks the CSRF token itself, after the guard
async def upload_door(request: HttpRequest, slug: str) -> HttpResponseBase:
    """UploadView, off the worker's shared sync thread, with its own database connection (closed
    after, as channels' database_sync_to_async does)."""
    return await database_sync_to_async(_upload_view, thread_sensitive=False)(request, slug=slug)


# drf-spectacular finds the view's class (and so its schema) through these, as on DRF's own views.
upload_door.cls = UploadView  # type: ignore[attr-defined]
upload_door.initkwargs = {}  # type: ignore[attr-defined]
