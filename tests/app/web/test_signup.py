"""Sign-up: look-alike and mixed-script usernames are refused, limits count an IPv6 client by its
/64, and no HSTS header is sent without TLS."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

PASSWORD = "Str0ng-enough-pw"


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["\u0430lice", "\u0430dmin", "p\u0430ypal"], ids=["alice", "admin", "paypal"])
def test_signup_refuses_usernames_that_mix_alphabets(username):
    """`аlice`, `аdmin`: a Cyrillic а (U+0430) among Latin letters passes for another name."""
    response = Client().post(
        "/accounts/signup/",
        {"username": username, "email": "someone@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "uses characters that look like others" in response.text
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["Alice", "ALICE", "\uff41lice"], ids=["capital", "upper", "fullwidth"])
def test_signup_refuses_a_name_taken_in_another_case_or_width(make_user, username):
    make_user("alice")
    response = Client().post(
        "/accounts/signup/",
        {"username": username, "email": "someone@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200 and "A user with that username already exists." in response.text
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["\u0410\u043b\u0438\u0441\u0430", "jos\u00e9", "bob_42"])
def test_signup_accepts_names_in_one_alphabet(username):
    response = Client().post(
        "/accounts/signup/",
        {"username": username, "email": "someone@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert get_user_model().objects.get().username == username


@pytest.mark.django_db
def test_an_ipv6_client_counts_by_its_64_for_sign_ups_and_token_failures(settings):
    """One host commonly holds a whole /64: a fresh address for each attempt buys nothing."""
    settings.CHAT_SIGNUP_PER_HOUR = 2
    for number in range(3):
        client = Client(REMOTE_ADDR=f"2001:db8:1:2::{number + 1}")
        data = {
            "username": f"v6user{number}",
            "email": f"v6user{number}@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        }
        response = client.post("/accounts/signup/", data)
        assert response.status_code == (302 if number < 2 else 429), number
    other_network = Client(REMOTE_ADDR="2001:db8:1:3::1")
    data = {"username": "v6other", "email": "v6other@example.com", "password1": PASSWORD, "password2": PASSWORD}
    assert other_network.post("/accounts/signup/", data).status_code == 302

    settings.CHAT_TOKEN_FAILURES_PER_MINUTE = 3
    from chat import throttle

    throttle.token_failures.cache_clear()
    statuses = [
        Client(REMOTE_ADDR=f"2001:db8:9:9::{n + 1}")
        .get("/api/rooms/", HTTP_AUTHORIZATION=f"Bearer chat_wrong{n}")
        .status_code
        for n in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.django_db
def test_no_hsts_without_tls(client):
    response = client.get("/healthz", secure=True)
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers
