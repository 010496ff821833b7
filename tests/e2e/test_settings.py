"""Start-up configuration: a mistake in the environment stops `manage.py` and the Daphne worker
at once with one sentence naming the variable, never a stack trace; no variables at all is a
working default. Each case runs in its own process with its own environment."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daphne_server import REPO_ROOT, clean_env, free_port
from tests.support.processes import assert_refused, manage

DAPHNE = str(Path(sys.executable).parent / "daphne")


def test_database_url_without_secret_key_is_refused(tmp_path):
    result = manage("check", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    assert_refused(result, "DJANGO_SECRET_KEY is not set")


def test_redis_url_without_secret_key_is_refused():
    result = manage("check", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert_refused(result, "DJANGO_SECRET_KEY is not set")


def test_an_empty_secret_key_counts_as_unset(tmp_path):
    result = manage("check", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DJANGO_SECRET_KEY": "  "})
    assert_refused(result, "DJANGO_SECRET_KEY is not set")


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_debug_must_be_a_boolean(value):
    result = manage("check", env={"DJANGO_DEBUG": value})
    assert_refused(result, "DJANGO_DEBUG", repr(value))


@pytest.mark.parametrize("value", ["0", "1", "true", "False", "no", "on", ""])
def test_debug_accepts_the_usual_spellings(value):
    result = manage("check", env={"DJANGO_DEBUG": value})
    assert result.returncode == 0, result.stderr


def test_a_database_url_that_is_no_url_is_refused():
    result = manage("check", env={"DATABASE_URL": "nope://somewhere", "DJANGO_SECRET_KEY": "k" * 50})
    assert_refused(result, "DATABASE_URL")


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT must be a whole number, not 'smtp'."),
        ({"CHAT_SITE_URL": "chat.example.com"}, "CHAT_SITE_URL must be scheme://host[:port]"),
        ({"CHAT_EMAIL_NOTIFY_DELAY_SECONDS": "soon"}, "CHAT_EMAIL_NOTIFY_DELAY_SECONDS must be a whole number"),
    ],
    ids=["email-port", "site-url", "notify-delay"],
)
def test_a_bad_email_setting_stops_manage_py(env, sentence):
    assert_refused(manage("check", env=env), sentence)


def test_a_limit_that_is_no_number_is_refused():
    result = manage("check", env={"CHAT_MAX_BODY": "lots"})
    assert_refused(result, "CHAT_MAX_BODY", "'lots'")


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"CHAT_MAX_SOCKETS_PER_USER": "0"}, "CHAT_MAX_SOCKETS_PER_USER must be at least 1, not 0."),
        ({"CHAT_USER_RATE_PER_SECOND": "fast"}, "CHAT_USER_RATE_PER_SECOND must be a whole number, not 'fast'."),
        ({"CHAT_MAX_ROOMS_PER_SOCKET": "-5"}, "CHAT_MAX_ROOMS_PER_SOCKET must be at least 1, not -5."),
        ({"CHAT_MAX_SEND_BUFFER_BYTES": "1000"}, "CHAT_MAX_SEND_BUFFER_BYTES must be at least 65536, not 1000."),
        ({"CHAT_LOGIN_FAILURE_LIMIT": "0"}, "CHAT_LOGIN_FAILURE_LIMIT must be at least 1, not 0."),
        ({"CHAT_LOGIN_COOLOFF_MINUTES": "15m"}, "CHAT_LOGIN_COOLOFF_MINUTES must be a whole number, not '15m'."),
        ({"CHAT_TRUSTED_PROXIES": "nginx"}, "CHAT_TRUSTED_PROXIES must list addresses or networks"),
        ({"CHAT_SIGNUP_PER_HOUR": "0"}, "CHAT_SIGNUP_PER_HOUR must be at least 1, not 0."),
        ({"CHAT_TOKEN_FAILURES_PER_MINUTE": "many"}, "CHAT_TOKEN_FAILURES_PER_MINUTE must be a whole number"),
        ({"DJANGO_HSTS_SECONDS": "-1"}, "DJANGO_HSTS_SECONDS must be at least 0, not -1."),
        ({"CHAT_LOGIN_DEVICE_DAYS": "0"}, "CHAT_LOGIN_DEVICE_DAYS must be at least 1, not 0."),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
def test_abuse_limits_are_checked_at_start_up(env, sentence):
    assert_refused(manage("check", env=env), sentence)


def test_no_variables_at_all_is_a_working_default():
    result = manage("check", env={})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_complete_configuration_passes(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "s" * 50,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "chat.example.com,127.0.0.1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    }
    result = manage("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # The database named by DATABASE_URL is the one the commands use.
    result = manage("migrate", "--noinput", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "db.sqlite3").exists()


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be 1 or 0"),
        ({"DATABASE_URL": "sqlite:////nonexistent-dir/db.sqlite3"}, "DJANGO_SECRET_KEY is not set"),
        # The worker's own variables (server/worker.py), which manage.py does not read.
        ({"CHAT_LISTEN_BACKLOG": "lots"}, "CHAT_LISTEN_BACKLOG must be a whole number, not 'lots'."),
        ({"CHAT_LISTEN_BACKLOG": "0"}, "CHAT_LISTEN_BACKLOG must be at least 1, not 0."),
        ({"CHAT_CONNECTION_CHECK_SECONDS": "0.5"}, "CHAT_CONNECTION_CHECK_SECONDS must be at least 1, not 0.5."),
        ({"CHAT_SHUTDOWN_TIMEOUT": "soon"}, "CHAT_SHUTDOWN_TIMEOUT must be a number, not 'soon'."),
    ],
    ids=["bad-debug", "no-secret-key", "backlog-no-number", "backlog-zero", "check-seconds-low", "shutdown-no-number"],
)
def test_daphne_worker_with_a_bad_setting_stops_at_once(env, sentence):
    port = free_port()
    try:
        result = subprocess.run(
            [str(REPO_ROOT / "bin" / "daphne-worker"), "-b", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=clean_env({"DAPHNE": DAPHNE, **env}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the worker was still running after 30 s despite a bad setting:\n{timeout.stderr}")
    assert_refused(result, sentence)
    assert result.returncode == 2, result.stderr
    assert "Configuration error: " + sentence in result.stderr
    assert "Listening on" not in result.stdout + result.stderr


def test_the_worker_variables_are_not_the_settings_business():
    """manage.py reads none of them: a value only the worker would refuse passes `check`."""
    result = manage("check", env={"CHAT_LISTEN_BACKLOG": "lots", "CHAT_SHUTDOWN_TIMEOUT": "soon"})
    assert result.returncode == 0, result.stderr


def test_the_settings_write_nothing_and_manage_py_prepares_the_folders(tmp_path):
    """Importing config.settings makes no folder (nor the local key: DJANGO_SECRET_KEY is given);
    manage.py makes the ones the settings name before Django starts."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "s" * 50,
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    code = "import config.settings as s; print(s.STATIC_ROOT, s.DATABASES['default']['NAME'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=clean_env(env), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "static"), str(tmp_path / "data" / "db.sqlite3")]
    assert list(tmp_path.iterdir()) == []

    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static").is_dir() and (tmp_path / "data").is_dir()


def test_an_unknown_channel_layer_is_refused():
    result = manage("check", env={"CHAT_CHANNEL_LAYER": "rabbitmq"})
    assert_refused(result, "CHAT_CHANNEL_LAYER must be one of redis-pubsub, redis, not 'rabbitmq'.")


@pytest.mark.parametrize(
    ("choice", "backend"),
    [
        ("", "channels_redis.pubsub.RedisPubSubChannelLayer"),  # the default, by measurement
        ("redis-pubsub", "channels_redis.pubsub.RedisPubSubChannelLayer"),
        ("redis", "channels_redis.core.RedisChannelLayer"),
    ],
)
def test_redis_url_selects_the_measured_layer(choice, backend):
    code = "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND'])"
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "DJANGO_SECRET_KEY": "k" * 50, "CHAT_CHANNEL_LAYER": choice}
    result = manage("shell", "--verbosity", "0", "--command", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == backend


def test_presence_ttl_has_a_floor():
    result = manage("check", env={"CHAT_PRESENCE_TTL": "1"})
    assert_refused(result, "CHAT_PRESENCE_TTL must be at least 3, not 1.")
