"""Outgoing email (password resets, notification emails), read from the environment like every
other setting (README "Configuration").

With EMAIL_HOST unset, mail goes to the console backend: each email is printed on the worker's
standard output, so a checkout sends nothing anywhere by accident. With EMAIL_HOST set, Django's
SMTP backend sends it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

from config.env import env_bool, env_int, env_str

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


@dataclass(frozen=True)
class EmailSettings:
    backend: str
    host: str
    port: int
    user: str
    password: str
    use_tls: bool
    use_ssl: bool
    timeout: int
    from_email: str


def is_sender(value: str) -> bool:
    """`chat@example.com` or `Channels Chat <chat@example.com>`."""
    _name, address = parseaddr(value)
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def read_email_settings() -> EmailSettings:
    host = env_str("EMAIL_HOST")
    use_tls = env_bool("EMAIL_USE_TLS", False)
    use_ssl = env_bool("EMAIL_USE_SSL", False)
    if use_tls and use_ssl:
        raise ImproperlyConfigured(
            "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on: STARTTLS (usually port 587) or TLS from "
            "the first byte (usually port 465), one of them."
        )
    default_port = 465 if use_ssl else 587 if use_tls else 25
    port = env_int("EMAIL_PORT", default_port, minimum=1, maximum=65535)
    user = env_str("EMAIL_HOST_USER")
    password = env_str("EMAIL_HOST_PASSWORD")
    if password and not user:
        raise ImproperlyConfigured("EMAIL_HOST_PASSWORD is set but EMAIL_HOST_USER is not: set both, or neither.")
    from_email = env_str("DEFAULT_FROM_EMAIL", "Channels Chat <chat@localhost>")
    if not is_sender(from_email):
        raise ImproperlyConfigured(
            f"DEFAULT_FROM_EMAIL must be an email address, optionally with a name "
            f"('Chat <chat@example.com>'), not {from_email!r}."
        )
    return EmailSettings(
        backend=SMTP_BACKEND if host else CONSOLE_BACKEND,
        host=host or "localhost",
        port=port,
        user=user,
        password=password,
        use_tls=use_tls,
        use_ssl=use_ssl,
        timeout=env_int("EMAIL_TIMEOUT", 10, minimum=1),
        from_email=from_email,
    )
