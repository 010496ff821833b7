"""The files a checkout needs before Django starts, made by `prepare_checkout()`.

config.settings only reads: importing it writes no file and makes no folder. The entry points
(`manage.py`, `python -m server.worker`, the test suite through tests/prepare.py) call
`prepare_checkout()` first; `python -m config.checkout` runs it alone (`make lint`, whose mypy
loads the settings).
"""

from __future__ import annotations

import importlib
import os
import secrets
from pathlib import Path
from types import ModuleType

from django.core.exceptions import ImproperlyConfigured

from config.env import env_raw

BASE_DIR = Path(__file__).resolve().parent.parent
# A key for a single checkout, kept in a git-ignored file beside manage.py.
LOCAL_SECRET_KEY_FILE = BASE_DIR / ".secret_key"


def uses_local_secret_key() -> bool:
    """No DJANGO_SECRET_KEY, and one process on this checkout: no shared database or Redis, so no
    other worker has to sign sessions with the same key."""
    return not (env_raw("DJANGO_SECRET_KEY") or env_raw("DATABASE_URL") or env_raw("REDIS_URL"))


def read_local_secret_key(path: Path = LOCAL_SECRET_KEY_FILE) -> str:
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    except OSError as error:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is not set and {path} cannot be read: {error.strerror}."
        ) from None
    if not key:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is not set and {path} holds no key: any manage.py command (or `python -m config.checkout`) "
            "makes one for this checkout."
        )
    return key


def make_local_secret_key(path: Path = LOCAL_SECRET_KEY_FILE) -> None:
    """Write a new key to `path` unless it exists. The key appears whole or not at all (written
    aside, then linked into place), so a process starting at the same moment never reads half."""
    if path.exists():
        return
    draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first: theirs stays
            pass
        except OSError:  # a file system without hard links: a rename, unless a key appeared meanwhile
            if not path.exists():
                os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def folders(settings: ModuleType) -> list[Path]:
    """The folders the settings name and expect to find: the SQLite database's (and its test
    database's), STATIC_ROOT (WhiteNoise warns about a missing one) and the uploads' folder."""
    found = [Path(settings.STATIC_ROOT)]
    if settings.CHAT_STORAGE == "local":
        found.append(Path(settings.CHAT_MEDIA_ROOT))
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        found.append(Path(database["NAME"]).parent)
        found.append(Path(database["TEST"]["NAME"]).parent)
    return found


def prepare_checkout() -> None:
    """Make what the settings read: the local secret key when they use one, then the folders they
    name. Raises ImproperlyConfigured, as the settings do, for a bad variable."""
    if uses_local_secret_key():
        make_local_secret_key()
    settings = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE") or "config.settings")
    for folder in folders(settings):
        folder.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    import sys

    try:
        prepare_checkout()
    except ImproperlyConfigured as error:
        sys.stderr.write(f"Configuration error: {error}\n")
        sys.exit(2)
