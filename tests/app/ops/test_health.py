"""/healthz and /readyz (chat.ops.health) through Django's test client; tests/e2e/test_readiness.py
takes the backends away from a real worker."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["status"] == "ok"


# readyz reaches the database through channels' database_sync_to_async, which closes the
# connection it used; inside the test's wrapping transaction that would break the test itself,
# so these run with real transactions (as the view does in production).
@pytest.mark.django_db(transaction=True)
def test_readyz_checks_the_database_and_the_channel_layer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "channel_layer": "ok"}
    assert "no-cache" in response.get("Cache-Control", "") or "max-age=0" in response.get("Cache-Control", "")


@pytest.mark.django_db(transaction=True)
def test_health_endpoints_need_no_login(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
