"""HTTP as a client that uploads and downloads files does it, over real sockets: a multipart body,
redirects not followed (a test looks at them). Not a test module."""

from __future__ import annotations

import http.client
import io
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from PIL import Image


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "----chat" + secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(base_url: str, slug: str, token: str, filename: str, content: bytes) -> Answer:
    body, content_type = multipart("file", filename, content)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    return fetch(f"{base_url}/api/rooms/{slug}/uploads/", method="POST", body=body, headers=headers)


def send(base_url: str, slug: str, token: str, **message: Any) -> Answer:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return fetch(
        f"{base_url}/api/rooms/{slug}/messages/", method="POST", body=json.dumps(message).encode(), headers=headers
    )


def photo_with_gps() -> bytes:
    """A JPEG as a phone writes it: a camera name and the place it was taken in its EXIF."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 7.5), 3: "E", 4: (13.0, 24.0, 1.0)}
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "blue").save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()
