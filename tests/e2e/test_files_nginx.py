"""Files behind nginx, as `make cluster` and docker compose deploy them: a real nginx rendered from
deploy/nginx/chat.conf.template in front of a real Daphne worker (bin/cluster). The worker only
checks who asks and answers with X-Accel-Redirect; nginx sends the bytes from the shared folder.
nginx's body limit follows CHAT_UPLOAD_MAX_BYTES: a body over it never reaches a worker."""

import os

import pytest

from tests.support.cluster_server import ClusterServer
from tests.support.uploads import fetch, multipart, photo_with_gps, send, upload

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    with ClusterServer(workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def token(cluster) -> str:
    return cluster.manage("create_token", "alice").strip().splitlines()[-1]


def test_the_worker_authorizes_and_nginx_sends_the_bytes(cluster, token):
    content = os.urandom(MiB)  # 1 MiB passes the default limit
    response = upload(cluster.url, "lobby", token, "data.bin", content)
    assert response.status == 201, response.body
    item = response.json()
    assert item["size"] == MiB and item["content_type"] == "application/octet-stream"
    assert send(cluster.url, "lobby", token, body="the data", attachments=[item["id"]]).status == 201
    auth = {"Authorization": f"Bearer {token}"}

    # Straight to the worker: headers only, and where nginx should look
    direct = fetch(cluster.base_url(worker=1) + item["url"], headers=auth)
    assert direct.status == 200 and direct.body == b""
    accel = direct.headers["X-Accel-Redirect"]
    assert accel.startswith("/_protected/files/") and accel.endswith(".bin")

    # Through nginx: the bytes, with the worker's headers kept and the file's own added
    got = fetch(cluster.url + item["url"], headers=auth)
    assert got.status == 200 and got.body == content
    assert "X-Accel-Redirect" not in got.headers
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"] == 'attachment; filename="data.bin"'
    assert got.headers["Cache-Control"] == "private"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]

    # nobody reaches the folder without the worker's say
    assert fetch(cluster.url + accel).status == 404
    assert fetch(cluster.url + item["url"]).status == 401
    bob = cluster.manage("create_token", "bob").strip().splitlines()[-1]
    assert fetch(cluster.url + item["url"], headers={"Authorization": f"Bearer {bob}"}).status == 200
    stranger = cluster.manage("create_token", "carol").strip().splitlines()[-1]
    pending = upload(cluster.url, "lobby", token, "draft.txt", b"not sent yet").json()
    assert fetch(cluster.url + pending["url"], headers={"Authorization": f"Bearer {stranger}"}).status == 404


def test_an_image_comes_through_nginx_inline_and_without_its_metadata(cluster, token):
    item = upload(cluster.url, "lobby", token, "photo.jpg", photo_with_gps()).json()
    send(cluster.url, "lobby", token, body="", attachments=[item["id"]])
    auth = {"Authorization": f"Bearer {token}"}
    got = fetch(cluster.url + item["url"], headers=auth)
    assert got.status == 200 and got.body.startswith(b"\xff\xd8\xff")
    assert b"Exif" not in got.body and b"SecretCam" not in got.body
    assert got.headers["Content-Type"] == "image/jpeg" and got.headers["Content-Disposition"].startswith("inline;")
    thumb = fetch(cluster.url + item["thumbnail_url"], headers=auth)
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"


def test_a_body_over_the_limit_is_refused_by_nginx(cluster, token):
    body, content_type = multipart("file", "big.bin", b"\0" * (26 * MiB))
    refused = fetch(
        cluster.url + "/api/rooms/lobby/uploads/",
        method="POST",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert refused.status == 413
    assert b"nginx" in refused.body  # nginx's own page: no worker saw it
    # the larger limit is the upload door's alone: elsewhere bodies stay small
    message = fetch(
        cluster.url + "/api/rooms/lobby/messages/",
        method="POST",
        body=b'{"body": "' + b"x" * (2 * MiB) + b'"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert message.status == 413 and b"nginx" in message.body
