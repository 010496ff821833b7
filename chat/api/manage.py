"""The HTTP API's room management, beside the socket's frames of the same names
(chat.realtime.manage); the services check who may do what (chat.selectors.room_manage_check):

    GET    /api/rooms/<slug>/                      the room (anyone who may read it)
    PATCH  /api/rooms/<slug>/                      {"name", "topic", "private", "archived": true} (managers)
    GET    /api/rooms/<slug>/members/              the members, with their roles
    POST   /api/rooms/<slug>/members/              {"user": ...}: invite (managers)
    DELETE /api/rooms/<slug>/members/<username>/   remove a member (managers), or leave (yourself)
    DELETE /api/rooms/<slug>/messages/<id>/        delete a message: your own, or anyone's (managers)
"""

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.api.serializers import ERRORS, MessageSerializer, RoomInfoSerializer, StrictRegexField, StringOnly
from chat.api.views import MESSAGE_ID, SLUG, AuthenticatedRequest
from chat.errors import ChatError, ErrorCode
from chat.models import MAX_ROOM_NAME_LENGTH, MAX_ROOM_TOPIC_LENGTH, Membership
from chat.realtime.protocol import MAX_USERNAME_LENGTH
from chat.selectors import readable_room, room_named, user_named


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    creator = serializers.BooleanField(help_text="This member created the room.")
    invited = serializers.BooleanField(help_text="Invited (may enter the room while it is private).")


class MembersSerializer(serializers.Serializer):
    members = MemberSerializer(many=True, help_text="Moderators and the creator first, then by name.")


class RoomSettingsSerializer(serializers.Serializer):
    info = RoomInfoSerializer()
    can_manage = serializers.BooleanField(help_text="The caller may change the room and its members.")


class RoomUpdateSerializer(serializers.Serializer):
    name = StringOnly(required=False, max_length=MAX_ROOM_NAME_LENGTH, help_text="The slug stays.")
    topic = StringOnly(required=False, allow_blank=True, max_length=MAX_ROOM_TOPIC_LENGTH)
    private = serializers.BooleanField(required=False)
    archived = serializers.BooleanField(required=False, help_text="true archives the room (it closes for everyone).")


class InviteSerializer(serializers.Serializer):
    user = StrictRegexField(
        r"^[^\x00]+$",  # the schema says what DRF refuses: no NUL
        max_length=MAX_USERNAME_LENGTH,
        trim_whitespace=False,
        help_text="The username of the person to invite.",
    )


USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="The member's username.")


def _settings(room_slug: str, user: User) -> dict[str, object]:
    room = readable_room(slug=room_slug, user=user)
    return {
        "info": selectors.room_info(room=room, viewer=user.username),
        "can_manage": selectors.can_manage(room=room, user=user),
    }


class RoomDetailView(APIView):
    @extend_schema(
        operation_id="rooms_detail",
        summary="A room, and whether you may manage it",
        parameters=[SLUG],
        responses={200: RoomSettingsSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        return Response(_settings(slug, request.user))

    @extend_schema(
        summary="Rename the room, change its topic, make it private or public, or archive it (managers)",
        parameters=[SLUG],
        request=RoomUpdateSerializer,
        responses={200: RoomSettingsSerializer, **ERRORS},
    )
    def patch(self, request: AuthenticatedRequest, slug: str) -> Response:
        data = RoomUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        archived = changes.pop("archived", None)
        if archived is False:
            raise ChatError(
                ErrorCode.BAD_REQUEST, "An archived room is brought back by staff, in the admin.", room=slug
            )
        if archived and changes:
            raise ChatError(ErrorCode.BAD_REQUEST, "Archive the room on its own, without other changes.", room=slug)
        room = room_named(slug=slug)
        if archived:
            services.room_archive_by(room=room, by=request.user)
            info = selectors.room_info(room=room, viewer=request.user.username)
            return Response({"info": info, "can_manage": True})
        services.room_update(room=room, by=request.user, **changes)
        return Response(_settings(slug, request.user))


class MembersView(APIView):
    @extend_schema(
        summary="The room's members and their roles", parameters=[SLUG], responses={200: MembersSerializer, **ERRORS}
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        return Response({"members": selectors.room_members(room=readable_room(slug=slug, user=request.user))})

    @extend_schema(
        summary="Invite someone (managers): in a private room, the way in",
        parameters=[SLUG],
        request=InviteSerializer,
        responses={201: MembersSerializer, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = room_named(slug=slug)
        services.member_invite(room=room, user=user_named(data.validated_data["user"], slug=slug), by=request.user)
        return Response({"members": selectors.room_members(room=room)}, status=status.HTTP_201_CREATED)


class MemberView(APIView):
    @extend_schema(
        summary="Remove a member (managers), or leave the room for good (your own username)",
        parameters=[SLUG, USERNAME],
        responses={204: None, **ERRORS},
    )
    def delete(self, request: AuthenticatedRequest, slug: str, username: str) -> Response:
        if username == request.user.username:
            services.room_part(room=readable_room(slug=slug, user=request.user), user=request.user)
        else:
            room = room_named(slug=slug)
            services.member_remove(room=room, user=user_named(username, slug=slug), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageView(APIView):
    @extend_schema(
        summary="Delete a message: your own, or anyone's for the room's moderators and creator",
        parameters=[SLUG, MESSAGE_ID],
        responses={200: MessageSerializer, **ERRORS},
    )
    def delete(self, request: AuthenticatedRequest, slug: str, message_id: int) -> Response:
        room = selectors.room_get_for(slug=slug, user=request.user)
        return Response(services.message_remove(room=room, user=request.user, message_id=message_id))
