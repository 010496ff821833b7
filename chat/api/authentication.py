"""The HTTP API's authentication: `Authorization: Bearer <token>` with an API token.

Failed token authentications count against the client address's limit, as on the socket
(chat.throttle.token_failures): past it a wrong token gets 429, a right one is always let in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import User
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

if TYPE_CHECKING:  # it imports rest_framework.views, which imports this module (DEFAULT_AUTHENTICATION_CLASSES)
    from drf_spectacular.openapi import AutoSchema

from chat import services
from chat.throttle import address_key, token_failures


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` with an API token; no header leaves the request to the session."""

    def authenticate(self, request: Request) -> tuple[User, int] | None:
        scheme, _space, credentials = get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        address = address_key(request.META.get("REMOTE_ADDR"))
        wait = token_failures().charge(address)
        found = services.token_authenticate(credentials.strip())
        if found is not None:
            token_failures().refund(address)
            return found  # (user, token id)
        if wait:
            raise exceptions.Throttled(
                wait=wait, detail=_("Too many failed token authentications from your address: try again later.")
            )
        raise exceptions.AuthenticationFailed("The token is unknown, revoked or expired.")

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="chat"'  # makes unauthenticated requests 401, not 403


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI description how BearerTokenAuthentication works."""

    target_class = "chat.api.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "An API token (manage.py create_token)."}
