"""The HTTP API against a real worker, checked by schemathesis from its own OpenAPI schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.daphne_server import DaphneServer


@pytest.fixture(scope="module")
def live():
    # Schemathesis sends a wrong token in every operation's checks, far more than the per-address
    # limit of failed token authentications (tested in test_security_http.py), which would then
    # answer 429 where this test expects the 401 the schema declares.
    with DaphneServer(env={"CHAT_TOKEN_FAILURES_PER_MINUTE": "100000"}) as server:
        token = server.manage("create_token", "alice").stdout.strip().splitlines()[-1]
        # A message in lobby for the operations on one message (replies, reactions).
        server.manage(
            "shell",
            "-c",
            "from chat import services; from chat.models import Room; from django.contrib.auth.models import User; "
            "services.message_send(room=Room.objects.get(slug='lobby'), author=User.objects.get(username='bob'), "
            "body='react to me')",
        )
        yield server, token


def test_the_api_answers_as_its_schema_says(live):
    """Every operation of /api/schema/, with requests hypothesis generates from it (valid and
    edge-case bodies and query strings, in the room `lobby`), sent to a real worker with a token: no 5xx, and
    every status code, content type and body is one the schema declares."""
    server, token = live
    schema = schemathesis.openapi.from_url(server.base_url + "/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /api/rooms/",
        "GET /api/rooms/{slug}/messages/",
        "POST /api/rooms/{slug}/messages/",
        "GET /api/rooms/{slug}/messages/{message_id}/replies/",
        "POST /api/rooms/{slug}/messages/{message_id}/reactions/",
        "DELETE /api/rooms/{slug}/messages/{message_id}/reactions/",
        "GET /api/direct/",
        "POST /api/direct/",
        "GET /api/users/",
        "GET /api/search/",
        "GET /api/unread/",
        "GET /api/rooms/{slug}/notify/",
        "PUT /api/rooms/{slug}/notify/",
        "GET /api/rooms/{slug}/",
        "PATCH /api/rooms/{slug}/",
        "GET /api/rooms/{slug}/members/",
        "POST /api/rooms/{slug}/members/",
        "GET /api/rooms/{slug}/online/",
        "POST /api/rooms/{slug}/uploads/",
        "GET /files/{upload_id}/{name}",
        "GET /files/{upload_id}/thumbnail/",
        "DELETE /api/rooms/{slug}/members/{username}/",
        "DELETE /api/rooms/{slug}/messages/{message_id}/",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case):
            if case.path_parameters and "slug" in case.path_parameters:
                # a real room and message: random ones would all end in 404
                case.path_parameters["slug"] = "lobby"
                if "message_id" in case.path_parameters:
                    case.path_parameters["message_id"] = 1
            if case.path_parameters and "name" in case.path_parameters:
                # a file's name in its address is not checked: any one that makes a path will do
                case.path_parameters["name"] = "notes.txt"
            # "One emoji" is more than a JSON schema can say: a schema-valid string that is not one
            # is refused with the 400 (bad_request) the schema declares, so only that check is off.
            # So is "at most one of before, after and around" on history, and an `around` that names
            # a message of the room (a schema-valid id that names none is the declared 404); and "at
            # least one field" on a room's PATCH (an empty object is the declared 400).
            # A message's files are ids of the caller's own pending uploads (and a blank body is
            # allowed only with some); an upload must not be empty, nor a broken image: each
            # refused with the declared 400.
            history = case.method == "GET" and case.path.endswith("/messages/")
            files = case.method == "POST" and case.path.endswith(("/messages/", "/uploads/"))
            loose = "reactions" in case.path or history or files or case.method == "PATCH"
            excluded = [schemathesis.checks.positive_data_acceptance] if loose else []
            case.call_and_validate(
                base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded
            )

        conforms()
