"""The settings of the workers and `manage.py` runs the tests start (tests/support/daphne_server.py):
the project's own settings, read from the same environment, with one change: passwords are hashed
with MD5 instead of PBKDF2 (existing PBKDF2 hashes still verify). A PBKDF2 hash costs about 0.4 s of CPU here, and every login through
the real form and every seeded user pays one; what the tests check is that logins work, not how
slow the hash is. In-process tests do the same (tests/conftest.py: fast_password_hashing)."""

from django.conf import global_settings

from config.settings import *  # noqa: F403

# New hashes are MD5; the project's hashers stay behind it, so a password stored by another process
# (bench/search.py fills its database in-process with config.settings) still verifies.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *global_settings.PASSWORD_HASHERS]
