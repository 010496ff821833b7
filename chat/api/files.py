"""POST /api/rooms/<slug>/uploads/: one file (multipart field `file`) to send with a message
later (`attachments` on `send` or POST .../messages/). The work is in chat.files."""

from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
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
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > settings.CHAT_UPLOAD_MAX_BYTES + ENVELOPE_BYTES:
            raise files.too_large()
        upload = request.FILES.get("file")
        if self.guard.exceeded:
            raise files.too_large()
        if upload is None:
            raise ChatError(ErrorCode.BAD_REQUEST, _("Send the file as the multipart field 'file'."), room=slug)
        stored = files.upload_create(room=room, uploader=request.user, file=upload)
        return Response(files.upload_wire(stored), status=status.HTTP_201_CREATED)
