"""Outgoing email from the environment (config/email.py): the console backend by default, SMTP
with EMAIL_HOST, and a bad value refused with one sentence naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.email import CONSOLE_BACKEND, SMTP_BACKEND, read_email_settings

VARIABLES = (
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_TIMEOUT",
    "DEFAULT_FROM_EMAIL",
)


@pytest.fixture
def env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def refused(sentence_start: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        read_email_settings()
    assert str(raised.value).startswith(sentence_start), raised.value


def test_nothing_set_prints_emails_on_the_console(env):
    email = read_email_settings()
    assert email.backend == CONSOLE_BACKEND
    assert email.from_email == "Channels Chat <chat@localhost>"


def test_a_host_selects_smtp_with_the_usual_ports(env):
    env(EMAIL_HOST="smtp.example.com")
    assert (read_email_settings().backend, read_email_settings().port) == (SMTP_BACKEND, 25)
    env(EMAIL_USE_TLS="1")
    assert read_email_settings().port == 587 and read_email_settings().use_tls
    env(EMAIL_USE_TLS="0", EMAIL_USE_SSL="yes")
    assert read_email_settings().port == 465 and read_email_settings().use_ssl
    env(
        EMAIL_PORT="2525",
        EMAIL_HOST_USER="chat",
        EMAIL_HOST_PASSWORD="secret",
        DEFAULT_FROM_EMAIL="Chat <c@example.com>",
    )
    email = read_email_settings()
    assert (email.port, email.user, email.password, email.from_email) == (
        2525,
        "chat",
        "secret",
        "Chat <c@example.com>",
    )


@pytest.mark.parametrize(
    ("values", "sentence"),
    [
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT must be a whole number, not 'smtp'."),
        ({"EMAIL_PORT": "70000"}, "EMAIL_PORT must be at most 65535, not 70000."),
        ({"EMAIL_USE_TLS": "sometimes"}, "EMAIL_USE_TLS must be 1 or 0"),
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on"),
        ({"EMAIL_HOST_PASSWORD": "secret"}, "EMAIL_HOST_PASSWORD is set but EMAIL_HOST_USER is not"),
        ({"DEFAULT_FROM_EMAIL": "chat at example"}, "DEFAULT_FROM_EMAIL must be an email address"),
        ({"EMAIL_TIMEOUT": "0"}, "EMAIL_TIMEOUT must be at least 1, not 0."),
    ],
    ids=["port-word", "port-high", "tls-word", "tls-and-ssl", "password-alone", "from-no-address", "timeout-zero"],
)
def test_a_bad_value_is_refused_with_a_sentence_naming_it(env, values, sentence):
    env(**values)
    refused(sentence)
