"""HTTP pages. Thin: they call selectors and services and render templates."""

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import devices, selectors, services, throttle
from .errors import ChatError
from .forms import RoomCreateForm, SignupForm

logger = logging.getLogger(__name__)


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/room_list.html", {"rooms": selectors.room_list_for(user=request.user)})


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        room = selectors.room_get_for(slug=slug, user=request.user)
    except ChatError as error:
        if error.code == ChatError.NOT_FOUND:
            raise Http404(error.detail) from None
        raise PermissionDenied(error.detail) from None
    config = {
        "room": room.slug,
        "username": request.user.get_username(),
        "wsPath": "/ws/chat/",
        "maxBody": settings.CHAT_MAX_BODY,
        # Where the "new messages" divider goes when the page opens.
        "lastRead": selectors.last_read_seq(room=room, user=request.user),
    }
    rooms = selectors.room_list_for(user=request.user)
    return render(request, "chat/room.html", {"room": room, "rooms": rooms, "config": config})


@login_required
def room_create(request: HttpRequest) -> HttpResponse:
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
        return redirect("chat:room", room.slug)
    return render(request, "chat/room_form.html", {"form": form})


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
        return devices.remember(request, redirect("chat:room_list"), user)
    return render(request, "registration/signup.html", {"form": form})


class ChatLoginView(LoginView):
    """Django's login view; a successful login also marks the browser as known for that account
    (chat/devices.py: the lockout does not apply to it)."""

    redirect_authenticated_user = True

    def form_valid(self, form):
        return devices.remember(self.request, super().form_valid(form), form.get_user())


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _database_ready() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_ready() -> None:
    """A message sent to this worker's own probe channel comes back through the layer.

    One probe channel per worker, made on first use and reused: a new channel per check would
    leave a subscription behind on every call with the pub/sub layer (it only unsubscribes a
    channel whose receive is cancelled). The default prefix matters on RedisChannelLayer: it
    reads every process-specific channel of the worker through one loop keyed by that prefix,
    and a channel with another prefix is never read while a socket holds that loop. A nonce
    tells this check's message from one a timed-out check left behind.
    """
    layer = get_channel_layer()
    probe = getattr(layer, "chat_readyz_probe", None)
    if probe is None:
        probe = {"channel": await layer.new_channel(), "lock": asyncio.Lock()}
        layer.chat_readyz_probe = probe
    async with probe["lock"]:
        nonce = uuid.uuid4().hex
        await layer.send(probe["channel"], {"type": "readyz.ping", "nonce": nonce})
        while (await layer.receive(probe["channel"])).get("nonce") != nonce:
            pass


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and a channel-layer round trip answer; 503 naming what failed."""
    checks = {}
    for name, check in (("database", database_sync_to_async(_database_ready)), ("channel_layer", _channel_layer_ready)):
        try:
            await asyncio.wait_for(check(), timeout=3)
            checks[name] = "ok"
        except Exception as error:  # any failure is an answer here, not a crash
            logger.warning("readyz: %s failed: %r", name, error)
            checks[name] = f"failed: {error.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
