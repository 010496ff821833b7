"""Uploading a file for a message over HTTP (POST /api/rooms/<slug>/uploads/, docs/api.md), with
the credentials the socket uses: an API token (`Authorization: Bearer`), or the session cookie with
its CSRF token, as the browser page sends them. Needs only the standard library."""

from __future__ import annotations

import json
import mimetypes
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from clients.endpoint import ClientError, Endpoint, describe_os_error

USER_AGENT = "chat-client/1 (python urllib)"


def cookie_value(cookie: str, name: str) -> str | None:
    """One cookie's value from a `Cookie:` header value."""
    for part in cookie.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _quoted(name: str) -> str:
    """A file name inside a multipart header's quotes (RFC 7578: UTF-8 as it is)."""
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


def multipart(field: str, name: str, content_type: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file; the body and its Content-Type."""
    boundary = f"----chat-client-{secrets.token_hex(12)}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{_quoted(name)}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload_file(
    endpoint: Endpoint,
    room: str,
    path: str | Path,
    *,
    token: str | None = None,
    cookie: str | None = None,
    origin: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Upload the file at `path` to `room`; the server's answer (the attachment: id, name, size,
    content_type, url, ...). ClientError with one sentence (the server's `detail` when it refused)."""
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ClientError(f"Cannot read {str(file)!r}: {error.strerror or error}.", fixable=True) from None
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    body, body_type = multipart("file", file.name, content_type, data)
    url = f"{endpoint.site_url}api/rooms/{urllib.parse.quote(room, safe='')}/uploads/"
    headers = {"Content-Type": body_type, "Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif cookie:
        headers["Cookie"] = cookie
        headers["X-CSRFToken"] = cookie_value(cookie, "csrftoken") or ""
        headers["Origin"] = origin or endpoint.http_base
        headers["Referer"] = endpoint.site_url
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    opener = urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
        try:
            detail = json.loads(raw).get("detail")
        except (ValueError, AttributeError):
            detail = None
        raise ClientError(
            f"{file.name} was not uploaded: {detail or f'HTTP {error.code}'}", fixable=error.code != 429
        ) from None
    except (OSError, urllib.error.URLError) as error:
        raise ClientError(describe_os_error(error, endpoint)) from None
    except ValueError:
        raise ClientError(f"{file.name}: the server's answer was not JSON.") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
        raise ClientError(f"{file.name}: the server's answer has no upload id.")
    return answer
