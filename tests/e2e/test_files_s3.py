"""Uploads in an S3 bucket (CHAT_STORAGE=s3): a real Daphne worker stores through django-storages'
S3 backend into moto's S3 server on a loopback port; downloads are redirects to short-lived signed
addresses that S3 itself answers, with the headers the worker asked for. And the settings stop
start-up with a sentence naming what an S3 deployment is missing."""

import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.daphne_server import REPO_ROOT, DaphneServer, clean_env, free_port
from tests.support.uploads import fetch, photo_with_gps, send, upload

BUCKET = "chat-uploads"
KEYS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    moto.stop()


@pytest.fixture(scope="module")
def server(s3):
    endpoint, _ = s3
    env = {
        "CHAT_STORAGE": "s3",
        "CHAT_S3_BUCKET": BUCKET,
        "CHAT_S3_ENDPOINT_URL": endpoint,
        "CHAT_S3_REGION": "us-east-1",
        **KEYS,
    }
    with DaphneServer(env=env) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def token(server) -> str:
    return server.manage("create_token", "alice").stdout.strip().splitlines()[-1]


def objects(client) -> dict[str, bytes]:
    """The bucket's objects now. One listed and then deleted before it is read (the server removes
    a deleted message's files in the background) is left out."""
    found = {}
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        try:
            found[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        except client.exceptions.NoSuchKey:
            continue
    return found


def test_an_image_goes_to_the_bucket_cleaned_and_comes_back_through_a_signed_redirect(server, s3, token):
    _, client = s3
    before = set(objects(client))
    response = upload(server.base_url, "lobby", token, "photo.jpg", photo_with_gps())
    assert response.status == 201, response.body
    item = response.json()
    assert item["content_type"] == "image/jpeg" and item["thumbnail_url"]
    new = {key: data for key, data in objects(client).items() if key not in before}
    assert len(new) == 2  # the image and its thumbnail, nothing else
    for data in new.values():
        assert b"Exif" not in data and b"SecretCam" not in data

    message = send(server.base_url, "lobby", token, body="look", attachments=[item["id"]])
    assert message.status == 201 and message.json()["attachments"] == [item]

    redirect = fetch(server.base_url + item["url"], headers={"Authorization": f"Bearer {token}"})
    assert redirect.status == 302 and redirect.body == b""
    assert redirect.headers["X-Content-Type-Options"] == "nosniff" and redirect.headers["Cache-Control"] == "private"
    location = redirect.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(s3[0] + f"/{BUCKET}/files/")
    assert query["X-Amz-Expires"] == ["60"] and "X-Amz-Signature" in query
    got = fetch(location)  # no credentials of ours: the signature is the permission
    assert got.status == 200 and got.body in new.values()
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["Content-Disposition"].startswith("inline;")

    thumb = fetch(server.base_url + item["thumbnail_url"], headers={"Authorization": f"Bearer {token}"})
    assert thumb.status == 302 and fetch(thumb.headers["Location"]).body in new.values()
    # without credentials there is no redirect at all
    assert fetch(server.base_url + item["url"]).status == 401


def test_a_page_from_the_bucket_is_a_download_and_goes_with_its_message(server, s3, token):
    _, client = s3
    page = b"<html><script>alert(1)</script></html>"
    item = upload(server.base_url, "lobby", token, "page.html", page).json()
    assert item["content_type"] == "text/plain"
    message = send(server.base_url, "lobby", token, body="", attachments=[item["id"]]).json()
    redirect = fetch(server.base_url + item["url"], headers={"Authorization": f"Bearer {token}"})
    got = fetch(redirect.headers["Location"])
    assert got.status == 200 and got.body == page
    assert got.headers["Content-Type"] == "text/plain"
    assert got.headers["Content-Disposition"] == 'attachment; filename="page.html"'
    assert page in objects(client).values()

    deleted = fetch(
        f"{server.base_url}/api/rooms/lobby/messages/{message['id']}/",
        method="DELETE",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert deleted.status == 200, deleted.body
    deadline = time.monotonic() + 5
    while page in objects(client).values() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page not in objects(client).values()  # the object went with the message
    assert fetch(server.base_url + item["url"], headers={"Authorization": f"Bearer {token}"}).status == 404


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"CHAT_STORAGE": "s3"}, "CHAT_S3_BUCKET is not set"),
        ({"CHAT_STORAGE": "s3", "CHAT_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k"}, "AWS_SECRET_ACCESS_KEY is not set"),
        ({"CHAT_STORAGE": "disk"}, "CHAT_STORAGE must be one of"),
        ({"CHAT_FILES_ACCEL_REDIRECT": "_protected"}, "CHAT_FILES_ACCEL_REDIRECT must be a path"),
    ],
    ids=["no-bucket", "half-the-keys", "unknown-storage", "accel-not-a-path"],
)
def test_a_storage_setting_missing_stops_start_up_with_a_sentence(env, sentence):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert sentence in result.stderr and "Traceback" not in result.stderr, result.stderr
