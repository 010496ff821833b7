"""Staff tools. Changes that users would notice go through services, so they act live."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, ForeignKey, Q, QuerySet
from django.forms.models import BaseInlineFormSet, ModelChoiceField
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import smart_split, unescape_string_literal

from chat import services
from chat.models import ApiToken, Ban, EmailPreference, Membership, Message, Room, Upload

if TYPE_CHECKING:  # django-stubs' own helper, not installed in production
    from django_stubs_ext import WithAnnotations


class _RoomCounts(TypedDict):
    _members: int
    _messages: int


def _staff(request: HttpRequest) -> User:
    """Who is using the admin: AdminSite lets only logged-in staff this far."""
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


# Staff moderate direct conversations without reading them: their text is not shown here, and
# nobody can be added to one (whoever is a member can read it), nor can one be made public.
DIRECT_BODY_HIDDEN = "— direct message, not shown —"
DIRECT_ROOM_FIXED = ["slug", "name", "topic", "private"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at", "last_read_seq"]

    def has_add_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        return super().has_add_permission(request, obj) and not (obj is not None and obj.is_direct)

    def has_change_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        return super().has_change_permission(request, obj) and not (obj is not None and obj.is_direct)

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_direct)

    def get_formset(
        self, request: HttpRequest, obj: Room | None = None, **kwargs: Any
    ) -> type[BaseInlineFormSet[Membership, Room, forms.ModelForm[Membership]]]:
        formset = super().get_formset(request, obj, **kwargs)
        # Someone staff add here is invited (may enter the room while it is private); the people
        # who only opened the room while it was public are listed unticked.
        formset.form.base_fields["invited"].initial = True
        return formset


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    # Narrow enough for 1280 px beside the admin's navigation and filters: the kind shows in the
    # address ("dm-…") and in the filters, the creation as a date (the time is on the room's page).
    list_display = ["slug", "name", "private", "archived", "member_count", "message_count", "created"]
    list_filter = ["kind", "private", "archived", "created_at"]
    search_fields = ["slug", "name", "topic"]
    readonly_fields = ["kind", "created_at", "last_seq"]
    inlines = [MembershipInline]
    actions = ["archive_rooms", "unarchive_rooms"]

    class Media:
        css = {"all": ["chat/admin.css"]}

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        readonly = list(self.readonly_fields)
        if obj is not None and obj.is_direct:
            # Its members and slug say who may read it; archiving or deleting it stays possible.
            readonly += [*DIRECT_ROOM_FIXED, "member_names"]
        return readonly

    @admin.display(description="members")
    def member_names(self, room: Room) -> str:
        return ", ".join(sorted(room.memberships.values_list("user__username", flat=True)))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=Count("memberships", distinct=True),
                _messages=Count("messages", filter=Q(messages__deleted=False), distinct=True),
            )
        )

    @admin.display(description="created at", ordering="created_at")
    def created(self, room: Room) -> str:
        return timezone.localtime(room.created_at).date().isoformat()

    @admin.display(description="members", ordering="_members")
    def member_count(self, room: WithAnnotations[Room, _RoomCounts]) -> int:
        return room._members

    @admin.display(description="messages", ordering="_messages")
    def message_count(self, room: WithAnnotations[Room, _RoomCounts]) -> int:
        return room._messages

    @admin.action(description="Archive selected rooms (closes them for everyone in them)")
    def archive_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        rooms = list(queryset.filter(archived=False))
        for room in rooms:
            services.room_archive(room=room)
        self.message_user(request, f"Archived {len(rooms)} room(s).", messages.SUCCESS)

    @admin.action(description="Unarchive selected rooms")
    def unarchive_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        rooms = list(queryset.filter(archived=True))
        for room in rooms:
            services.room_unarchive(room=room)
        self.message_user(request, f"Unarchived {len(rooms)} room(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Room, form: forms.ModelForm[Room], change: bool) -> None:
        became_archived = change and "archived" in form.changed_data and obj.archived
        became_private = change and "private" in form.changed_data and obj.private
        if not change and obj.created_by_id is None:
            obj.created_by = _staff(request)
        super().save_model(request, obj, form, change)
        if became_archived:
            services.room_archive(room=obj)
        if became_private:
            # Moderators and invited members stay; everyone else's sockets leave the room.
            services.room_access_changed(room=obj)

    def save_formset(
        self,
        request: HttpRequest,
        form: forms.ModelForm[Room],
        formset: BaseInlineFormSet[Any, Room, Any],
        change: bool,
    ) -> None:
        if formset.model is Membership:
            instances = formset.save(commit=False)
            for membership in formset.deleted_objects:
                services.membership_remove(room=membership.room, user=membership.user)
            for membership in instances:
                membership.save()
                services.membership_changed(membership=membership)
            formset.save_m2m()
        else:
            super().save_formset(request, form, formset, change)

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        services.room_delete(room=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        for room in queryset:
            services.room_delete(room=room)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "role", "invited", "joined_at", "last_read_seq"]
    list_filter = ["role", "invited", "room__private", "room__kind", "room"]
    search_fields = ["user__username", "room__slug", "room__name"]
    autocomplete_fields = ["user", "room"]
    readonly_fields = ["joined_at", "last_read_seq"]
    actions = ["invite_members"]

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "room":
            kwargs["queryset"] = Room.objects.filter(kind=Room.Kind.ROOM)  # a conversation keeps its members
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return super().has_change_permission(request, obj) and not (obj is not None and obj.room.is_direct)

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.room.is_direct)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"invited": True, **super().get_changeform_initial_data(request)}

    @admin.action(description="Invite selected members (they may enter the room while it is private)")
    def invite_members(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        count = queryset.filter(invited=False, room__kind=Room.Kind.ROOM).update(invited=True)
        self.message_user(request, f"Invited {count} member(s).", messages.SUCCESS)

    def save_model(
        self, request: HttpRequest, obj: Membership, form: forms.ModelForm[Membership], change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        services.membership_changed(membership=obj)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(room=obj.room, user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("room", "user"):
            services.membership_remove(room=membership.room, user=membership.user)


@admin.register(Ban)
class BanAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "reason", "by", "at"]
    list_filter = ["room", "at"]
    search_fields = ["user__username", "room__slug", "reason"]
    autocomplete_fields = ["user", "room"]
    readonly_fields = ["by", "at"]

    def get_form(
        self, request: HttpRequest, obj: Ban | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Ban]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        # A direct conversation has no one to protect from its members: leave it to delete messages.
        room_field = form.base_fields.get("room")
        if isinstance(room_field, forms.ModelChoiceField):
            room_field.queryset = Room.objects.filter(kind=Room.Kind.ROOM)
        return form

    def save_model(self, request: HttpRequest, obj: Ban, form: forms.ModelForm[Ban], change: bool) -> None:
        if change and {"user", "room"} & set(form.changed_data):
            services.ban_delete(ban=Ban.objects.get(pk=obj.pk))  # the ban moved to another user or room
        ban = services.ban_create(room=obj.room, user=obj.user, reason=obj.reason, by=_staff(request))
        obj.pk = ban.pk


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["seq", "room", "author", "short_body", "reply_to", "created_at", "deleted"]
    list_filter = ["deleted", "room__kind", "room", "created_at"]
    # The body is searched in ordinary rooms only (get_search_results); a number finds a message by id.
    search_fields = ["author__username", "room__slug", "client_id"]
    list_select_related = ["room", "author", "reply_to"]
    # Moderation is by deletion: an edited body would never reach the screens that show it.
    readonly_fields = [
        "room",
        "author",
        "seq",
        "rev",
        "text",
        "client_id",
        "created_at",
        "edited_at",
        "deleted",
        "reply_to",
        "reply_count",
        "reaction_list",
    ]
    fields = tuple(readonly_fields)
    actions = ["delete_messages"]
    date_hierarchy = "created_at"

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        if message.room.is_direct:
            return DIRECT_BODY_HIDDEN
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"

    @admin.display(description="body")
    def text(self, message: Message) -> str:
        return DIRECT_BODY_HIDDEN if message.room.is_direct else message.body

    @admin.display(description="reactions")
    def reaction_list(self, message: Message) -> str:
        return "; ".join(f"{emoji} {', '.join(names)}" for emoji, names in message.reactions) or "-"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        """Each word must match an author, a room's slug, a client_id, the body of a message in an
        ordinary room (never a direct message's), or be a message's id."""
        terms = []
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            term = Q(body__icontains=bit, room__kind=Room.Kind.ROOM)
            for field in self.search_fields:
                term |= Q(**{f"{field}__icontains": bit})
            if bit.isdigit() and len(bit) <= 18:
                term |= Q(pk=int(bit))
            terms.append(term)
        if not terms:
            return queryset, False
        return queryset.filter(*terms), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are sent through the chat, numbered per room

    def get_actions(self, request: HttpRequest) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a hard delete would leave a gap in the seqs
        return actions

    @admin.action(description="Delete selected messages (removes them live from every screen)")
    def delete_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = 0
        for message in queryset.filter(deleted=False):
            services.message_delete(message=message)
            count += 1
        self.message_user(request, f"Deleted {count} message(s).", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        services.message_delete(message=obj)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made here or with `manage.py create_token`; the secret is shown once, in the
    message after saving. They are revoked, not edited or deleted, so their history stays."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "name", "expires_at")
        return ("user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return self.readonly_fields if obj is None else [*self.readonly_fields, "user"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm[ApiToken], change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = services.token_create(user=obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk = token.pk
        self.message_user(
            request, f"The new token for {obj.user} is {raw} — copy it now: it is not shown again.", messages.WARNING
        )

    def get_actions(self, request: HttpRequest) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke instead: the record of who had access stays
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens (closes their open sockets)")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            services.token_revoke(token=token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


@admin.register(EmailPreference)
class EmailPreferenceAdmin(admin.ModelAdmin):
    """Who turned notification emails off (a user without a row gets them)."""

    list_display = ["user", "notify"]
    list_filter = ["notify"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    """Uploaded files: look, and delete one (its message loses it live; the stored files go)."""

    list_display = ["name", "room", "uploader", "content_type", "size", "attached", "created_at"]
    list_filter = ["content_type", "room__kind", "created_at", ("message", admin.EmptyFieldListFilter)]
    search_fields = ["name", "uploader__username", "room__slug"]
    list_select_related = ["room", "uploader"]
    readonly_fields = [
        "room",
        "uploader",
        "message",
        "name",
        "size",
        "content_type",
        "file",
        "thumbnail",
        "width",
        "height",
        "created_at",
    ]
    fields = tuple(readonly_fields)
    date_hierarchy = "created_at"

    @admin.display(boolean=True, description="sent")
    def attached(self, upload: Upload) -> bool:
        return upload.message_id is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # files come through the upload door, checked and cleaned

    def has_change_permission(self, request: HttpRequest, obj: Upload | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Upload) -> None:
        services.upload_delete(upload=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Upload]) -> None:
        for upload in queryset:
            services.upload_delete(upload=upload)
