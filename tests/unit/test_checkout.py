"""config.checkout: the local secret key is made once, whole and private, and read back; reading a
missing one stops with a sentence naming DJANGO_SECRET_KEY and the file."""

import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.checkout import make_local_secret_key, read_local_secret_key, uses_local_secret_key


def test_the_key_is_made_once_private_and_read_back(tmp_path):
    path = tmp_path / ".secret_key"
    make_local_secret_key(path)
    key = read_local_secret_key(path)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    make_local_secret_key(path)  # a second run keeps the first key
    assert read_local_secret_key(path) == key
    assert [p.name for p in tmp_path.iterdir()] == [".secret_key"]  # no draft left beside it


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_no_key_stops_with_a_sentence_naming_the_variable_and_the_file(tmp_path, content):
    path = tmp_path / ".secret_key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ImproperlyConfigured) as raised:
        read_local_secret_key(path)
    sentence = str(raised.value)
    assert sentence.startswith("DJANGO_SECRET_KEY is not set")
    assert str(path) in sentence and "manage.py" in sentence


@pytest.mark.parametrize(
    ("env", "local"),
    [
        ({}, True),
        ({"DJANGO_SECRET_KEY": " "}, True),
        ({"DJANGO_SECRET_KEY": "k" * 50}, False),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, False),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, False),
    ],
)
def test_the_local_key_is_for_a_lone_checkout_without_a_key_of_its_own(monkeypatch, env, local):
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert uses_local_secret_key() is local
