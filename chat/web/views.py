"""The pages. Thin: they call selectors and services and render templates."""

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from chat import selectors, services, throttle
from chat.errors import ChatError, ErrorCode
from chat.models import MAX_DIRECT_MEMBERS
from chat.web import devices
from chat.web.accounts import demo_logins_shown
from chat.web.forms import DirectForm, RoomCreateForm, SignupForm

logger = logging.getLogger(__name__)


class AuthenticatedRequest(HttpRequest):
    """What a @login_required view gets: a request from a logged-in account."""

    user: User


def _direct_context(user: User) -> dict[str, Any]:
    """What every page with a "Direct messages" section shows: the user's conversations (its "New
    message" dialog loads the people to choose from /direct/new/ when opened)."""
    return {"directs": selectors.direct_list_for(user=user), "direct_max": MAX_DIRECT_MEMBERS - 1}


@login_required
def room_list(request: AuthenticatedRequest) -> HttpResponse:
    context = {
        "rooms": selectors.room_list_for(user=request.user),
        # The counts stay live through a socket of the page's own (chat/static/chat/unread.js).
        "unread_config": {"username": request.user.get_username(), "wsPath": "/ws/chat/"},
        **_direct_context(request.user),
    }
    return render(request, "chat/room_list.html", context)


@login_required
def room_detail(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    try:
        room = selectors.room_get_for(slug=slug, user=request.user)
    except ChatError as error:
        if error.code == ErrorCode.NOT_FOUND:
            raise Http404(error.detail) from None
        raise PermissionDenied(error.detail) from None
    username = request.user.get_username()
    info = selectors.room_info(room=room, viewer=username)
    can_manage = selectors.can_manage(room=room, user=request.user)
    config = {
        "room": room.slug,
        "kind": info["kind"],
        "username": username,
        "wsPath": "/ws/chat/",
        "maxBody": settings.CHAT_MAX_BODY,
        "maxFiles": settings.CHAT_UPLOAD_MAX_FILES,  # files on one message (the composer's chips)
        # Where the "new messages" divider goes when the page opens.
        "lastRead": selectors.last_read_seq(room=room, user=request.user),
        "canManage": can_manage,  # room settings, members, and Delete on others' messages
    }
    context = {
        "room": room,
        "info": info,  # a direct conversation is named after the other people in it
        "rooms": selectors.room_list_for(user=request.user),
        "config": config,
        "notify": selectors.notify_levels(user=request.user, room_ids=[room.pk])[room.pk],
        "can_manage": can_manage,
        **_direct_context(request.user),
    }
    return render(request, "chat/room.html", context)


@login_required
def room_create(request: AuthenticatedRequest) -> HttpResponse:
    """Any user may open a public room, or a private one with the people they invite."""
    form = RoomCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        room = services.room_create(
            slug=data["slug"],
            name=data["name"],
            topic=data["topic"],
            private=data["private"],
            created_by=request.user,
            members=data["members"],
        )
        messages.success(request, _("Room “%(name)s” created.") % {"name": room.name})
        return redirect("chat:room", room.slug)
    return render(request, "chat/room_form.html", {"form": form})


@login_required
def direct_new(request: AuthenticatedRequest) -> HttpResponse:
    """Start a direct conversation, or reopen the one with the same people, and go to it. The
    pages' "New message" dialog posts here; without JavaScript this is its page."""
    form = DirectForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            room, _created = services.direct_open(user=request.user, usernames=form.cleaned_data["users"])
        except ChatError as error:
            form.add_error("users", error.detail)
        else:
            return redirect("chat:room", room.slug)
    chosen = [name for name in form["users"].value() or [] if name != request.user.get_username()]
    candidates, more = selectors.direct_candidates(user=request.user)
    context = {
        "form": form,
        "selected": chosen,
        "direct_users": candidates,
        "direct_users_more": more,
        "direct_max": MAX_DIRECT_MEMBERS - 1,
    }
    return render(request, "chat/direct_form.html", context, status=400 if form.errors else 200)


SIGNUP_WINDOW = 3600  # seconds: CHAT_SIGNUP_PER_HOUR accounts per client address in it


def signup(request: HttpRequest) -> HttpResponse:
    """At most CHAT_SIGNUP_PER_HOUR new accounts per client address an hour (chat/throttle.py:
    counted in the default cache, so per worker process unless CACHES names a shared one)."""
    if request.user.is_authenticated:
        return redirect("chat:room_list")
    key = f"chat:signup:{throttle.address_key(request.META.get('REMOTE_ADDR'))}"
    if request.method == "POST" and throttle.cache_count(key) >= settings.CHAT_SIGNUP_PER_HOUR:
        message = _("Too many accounts have been created from your network in the last hour. Please try again later.")
        logger.warning("Sign-up refused: %s accounts from %s this hour", settings.CHAT_SIGNUP_PER_HOUR, key)
        return render(request, "registration/signup.html", {"form": SignupForm(), "refusal": message}, status=429)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        throttle.cache_hit(key, SIGNUP_WINDOW)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome, %(name)s! Your account is ready.") % {"name": user.get_username()})
        return devices.remember(request, redirect("chat:room_list"), user)
    return render(request, "registration/signup.html", {"form": form})


class ChatLoginView(LoginView):
    """Django's login view; a successful login also marks the browser as known for that account
    (chat/web/devices.py: the lockout does not apply to it)."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "demo_logins": demo_logins_shown()}

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        return devices.remember(self.request, super().form_valid(form), form.get_user())
