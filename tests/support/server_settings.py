"""The settings of the workers and `manage.py` runs the tests start (tests/support/daphne_server.py):
the project's own settings, read from the same environment, with one change: passwords are hashed
with MD5 instead of PBKDF2. A PBKDF2 hash costs about 0.4 s of CPU here, and every login through
the real form and every seeded user pays one; what the tests check is that logins work, not how
slow the hash is. In-process tests do the same (tests/conftest.py: fast_password_hashing)."""

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
