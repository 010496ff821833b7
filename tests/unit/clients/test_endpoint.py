"""clients.endpoint: what a chat URL gives (socket URL, http(s) address and Origin, login page),
and the one-sentence refusals of a bad one."""

import pytest

from clients.endpoint import ClientError, Endpoint


@pytest.mark.parametrize(
    ("raw", "ws_url", "http_base", "login_url"),
    [
        (
            "ws://127.0.0.1:8000/ws/chat/",
            "ws://127.0.0.1:8000/ws/chat/",
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/accounts/login/",
        ),
        (
            "https://chat.example.com",
            "wss://chat.example.com/ws/chat/",
            "https://chat.example.com",
            "https://chat.example.com/accounts/login/",
        ),
        ("http://host:9000/", "ws://host:9000/ws/chat/", "http://host:9000", "http://host:9000/accounts/login/"),
        (
            "wss://example.com/chat/ws/chat/",
            "wss://example.com/chat/ws/chat/",
            "https://example.com",
            "https://example.com/chat/accounts/login/",
        ),
        ("ws://user:secret@host/ws/chat/", "ws://host/ws/chat/", "http://host", "http://host/accounts/login/"),
    ],
)
def test_a_url_gives_the_socket_the_origin_and_the_login_page(raw, ws_url, http_base, login_url):
    endpoint = Endpoint(raw)
    assert (endpoint.ws_url, endpoint.http_base, endpoint.login_url) == (ws_url, http_base, login_url)


def test_the_default_ports():
    assert Endpoint("wss://example.com/").port == 443
    assert Endpoint("ws://example.com/").port == 80
    assert Endpoint("ws://example.com:8001/").port == 8001


@pytest.mark.parametrize(
    ("raw", "sentence"),
    [
        ("ftp://example.com/", "it must start with ws:// or wss://"),
        ("ws://example.com:99999/", "the port is not a number from 1 to 65535"),
        ("ws:///ws/chat/", "there is no host name in it"),
    ],
)
def test_a_bad_url_is_one_sentence_to_fix(raw, sentence):
    with pytest.raises(ClientError) as caught:
        Endpoint(raw)
    assert sentence in caught.value.message and caught.value.fixable


def test_a_message_link_is_the_page_s_address_for_it():
    endpoint = Endpoint("wss://example.com/chat/ws/chat/")
    assert endpoint.message_url("kai-fa-zu", 42) == "https://example.com/chat/rooms/kai-fa-zu/?message=42"
    assert endpoint.message_url("lobby", 43, thread=42) == "https://example.com/chat/rooms/lobby/?message=42#thread-42"
