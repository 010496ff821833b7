"""Settings, all driven by the environment (see README "Configuration").

With no variable set, the app runs as one process on a SQLite file and the in-process channel
layer: `make run` and plain `manage.py` commands share those defaults.

Every variable is read through config.env, which stops start-up with one sentence naming a bad
one. Importing this module writes nothing: the local secret key and the folders named here are
made by config.checkout.prepare_checkout, which every entry point calls first.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.checkout import BASE_DIR, read_local_secret_key, uses_local_secret_key
from config.email import read_email_settings
from config.env import env_bool, env_choice, env_float, env_int, env_list, env_str

DEBUG = env_bool("DJANGO_DEBUG", False)
DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if uses_local_secret_key():
    SECRET_KEY = read_local_secret_key()  # made by config.checkout.prepare_checkout
elif not SECRET_KEY:
    # Several workers (or machines) must sign sessions with one key: no silent default.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: it is required when DATABASE_URL or REDIS_URL is set, "
        "because every worker must share one key."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])


def is_origin(value: str) -> bool:
    from chat.realtime.origin import parse_origin  # standard library and django.http only: safe here

    return parse_origin(value) is not None


def is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


# The pages whose Origin a browser's chat socket accepts (chat/realtime/origin.py, docs/security.md):
# when empty, the handshake's own origin (its scheme and Host header) and the exact entries of
# DJANGO_CSRF_TRUSTED_ORIGINS, as Django's CSRF check accepts for forms; when set, exactly these.
CHAT_ALLOWED_ORIGINS = env_list(
    "CHAT_ALLOWED_ORIGINS",
    [],
    check=is_origin,
    items="origins as scheme://host[:port] (http or https, no path or wildcard), separated by commas",
)

# TLS usually ends at the proxy: HTTPS redirects and secure-only cookies are separate switches.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS: browsers that saw the header refuse plain HTTP for this host for that many seconds. On by
# default (a year) only when TLS is on (the redirect or the secure cookies); 0 sends no header.
_TLS_ON = SECURE_SSL_REDIRECT or SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if _TLS_ON else 0)
# Both reach beyond this app (every subdomain; browsers' built-in lists, hard to leave): off
# unless the operator turns them on.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = []
if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    # W005 asks for includeSubDomains; whether the other subdomains of the domain all speak HTTPS
    # is the operator's knowledge, not the app's: an explicit choice (DJANGO_HSTS_INCLUDE_SUBDOMAINS).
    SILENCED_SYSTEM_CHECKS.append("security.W005")
if not SECURE_HSTS_PRELOAD:
    # W021 asks for preload, a submission to the browsers' lists that outlives this deployment:
    # likewise the operator's decision (DJANGO_HSTS_PRELOAD).
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# With --proxy-headers, X-Forwarded-For is believed only from these direct peers
# (addresses or networks, comma-separated): the proxy in front (chat/realtime/daphne.py). From any other peer
# the header is ignored and the peer's own address counts, so a client that reaches a worker
# directly cannot pick the address it is limited (or trusted) by. The default trusts loopback,
# where `make cluster`'s nginx sits; empty trusts nobody.
CHAT_TRUSTED_PROXIES = env_list(
    "CHAT_TRUSTED_PROXIES",
    ["127.0.0.1", "::1"],
    blank_is_empty=True,
    check=is_network,
    items="addresses or networks (10.0.0.0/8)",
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "chat",
]

MIDDLEWARE = [
    "chat.ops.middleware.RequestIdMiddleware",  # first: every log line of a request carries its id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it answers locked-out logins
]

# Login brute force (django-axes): after CHAT_LOGIN_FAILURE_LIMIT (default 5) wrong passwords for
# one username from one address, that pair is locked out for CHAT_LOGIN_COOLOFF_MINUTES (default
# 15): the login form then answers 429 with templates/registration/locked_out.html. Other users
# from the same address, and the same user from elsewhere, can still log in; a successful login
# clears the count. `manage.py axes_reset` (or the admin's "Access attempts") lifts a lockout.
# A browser that has logged in to that account before is exempt (chat/web/devices.py), so someone
# sharing the address (NAT, proxy) cannot lock its owner out: only the other browsers there.
# The address is REMOTE_ADDR: behind a proxy, run bin/daphne-worker --proxy-headers with the proxy
# in CHAT_TRUSTED_PROXIES (chat/realtime/daphne.py) so it is the client's.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before the password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CHAT_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CHAT_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = False  # chat.web.devices.reset_on_login does it, except for known browsers
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False  # one log line per failure is enough
AXES_WHITELIST_CALLABLE = "chat.web.devices.is_known_device"
AXES_CLIENT_IP_CALLABLE = "chat.throttle.request_address_key"  # an IPv6 client by its /64
# How long a browser stays known for an account after its last login there (chat/web/devices.py).
CHAT_LOGIN_DEVICE_DAYS = env_int("CHAT_LOGIN_DEVICE_DAYS", 30, minimum=1)

# Sign-up: at most this many new accounts per client address an hour (chat/web/views.py signup). The
# count lives in the default cache: with no CACHES setting that is each worker's own memory, so
# with N workers a client can get up to N times this; a shared CACHES backend makes it one count.
# A cache that fails does not stop sign-up (chat/throttle.py).
CHAT_SIGNUP_PER_HOUR = env_int("CHAT_SIGNUP_PER_HOUR", 5, minimum=1)
# Failed API-token authentications per client address a minute (HTTP API and WebSocket), counted
# in each worker's memory; past it a wrong token from that address gets 429 (HTTP) / 4429 (socket)
# until its minute ends; a right token is always let in (chat/api/authentication.py, chat/realtime/middleware.py).
CHAT_TOKEN_FAILURES_PER_MINUTE = env_int("CHAT_TOKEN_FAILURES_PER_MINUTE", 20, minimum=1)

# Content Security Policy: scripts only from our own static files, so even a rendering bug
# cannot run a script a user typed. (Inline styles stay allowed: the admin uses them.)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

SQLITE_OPTIONS = {
    # Writers queue for the lock instead of failing, and take it at BEGIN: no deadlock between
    # two transactions that both read, then both try to write (the seq counter).
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj-database-url raises plain ValueErrors with terse text
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL I can use: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "var" / "db.sqlite3"),
            "OPTIONS": SQLITE_OPTIONS,
        }
    }
# PostgreSQL connections come from a pool per worker process (Django's, on psycopg_pool) instead
# of one kept per thread: the worker's threads (the consumers' one sync thread, the pages', the
# notification emails') take one for each trip and give it back. Sizes: docs/scaling.md. Every
# connection is checked as it is taken, so one broken by a PostgreSQL (or PgBouncer) restart is
# replaced rather than failing a request. CHAT_DB_POOL=0 keeps one connection per thread instead.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("CHAT_DB_POOL", True):
    DATABASES["default"]["ENGINE"] = "chat.dbbackend"  # Django's, failing fast while PostgreSQL is down
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django refuses both
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": env_int("CHAT_DB_POOL_MIN", 2, minimum=1),
            "max_size": env_int("CHAT_DB_POOL_MAX", 8, minimum=1),
            # Seconds a thread waits for a connection before the error. Short: with PostgreSQL
            # down the pool waits for it instead of failing, and the consumers' one sync thread
            # would queue every socket's work behind that wait.
            "timeout": env_float("CHAT_DB_POOL_TIMEOUT", 1.0, minimum=0.1),
        },
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, never in-memory: async tests reach the database from several threads.
    DATABASES["default"].setdefault("TEST", {})
    DATABASES["default"]["TEST"].setdefault("NAME", str(BASE_DIR / "var" / "test.sqlite3"))
    # Their folders are made by config.checkout.prepare_checkout, not here.

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Which channels-redis layer carries events between workers: `redis-pubsub`
# (RedisPubSubChannelLayer, the default, chosen by measurement: docs/scaling.md) or `redis`
# (RedisChannelLayer).
CHAT_CHANNEL_LAYER = env_choice("CHAT_CHANNEL_LAYER", "redis-pubsub", ["redis-pubsub", "redis"])
# socket_timeout above channels-redis' 5 s blocking receive, or idle sockets die.
_REDIS_HOSTS = [{"address": REDIS_URL, "socket_timeout": 30}]
if REDIS_URL and CHAT_CHANNEL_LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": _REDIS_HOSTS,
                "capacity": env_int("CHAT_LAYER_CAPACITY", 1000, minimum=1),
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": _REDIS_HOSTS},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env_int("CHAT_LAYER_CAPACITY", 1000, minimum=1)},
        }
    }

# With REDIS_URL, sessions and the accounts that WebSocket handshakes authenticate are cached in
# Redis (the `shared` cache), so a handshake of a known session reads nothing from the database
# (chat.realtime.session_auth, chat.usercache). The cache fails open (chat/cache.py): with Redis
# away, pages and handshakes read the database. Its entries live at most CHAT_CACHE_SECONDS
# (default 300). The `default` cache stays each process's memory (per-worker counts: sign-ups,
# the API's rate). Without REDIS_URL, sessions stay in the database alone.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "chat.cache.FailOpenRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chat",
            "MAX_TIMEOUT": env_int("CHAT_CACHE_SECONDS", 300, minimum=1),
            # A Redis that hangs must not hold a page or a handshake: give up after a second.
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        },
    }
    SESSION_ENGINE = "chat.sessions"  # Django's cached_db on one cache object per process
    SESSION_CACHE_ALIAS = "shared"
    CHAT_USER_CACHE: str | None = "shared"
else:
    CHAT_USER_CACHE = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:room_list"
LOGOUT_REDIRECT_URL = "login"

# Outgoing email (config/email.py): SMTP when EMAIL_HOST is set, else the console backend.
_EMAIL = read_email_settings()
EMAIL_BACKEND = _EMAIL.backend
EMAIL_HOST = _EMAIL.host
EMAIL_PORT = _EMAIL.port
EMAIL_HOST_USER = _EMAIL.user
EMAIL_HOST_PASSWORD = _EMAIL.password
EMAIL_USE_TLS = _EMAIL.use_tls
EMAIL_USE_SSL = _EMAIL.use_ssl
EMAIL_TIMEOUT = _EMAIL.timeout
DEFAULT_FROM_EMAIL = SERVER_EMAIL = _EMAIL.from_email
# How long a password-reset link works (Django's default is three days).
PASSWORD_RESET_TIMEOUT = env_int("CHAT_PASSWORD_RESET_MINUTES", 60, minimum=5) * 60
# Password-reset emails one client address may ask for an hour (chat/web/accounts.py), counted in
# the default cache like sign-ups, so the form cannot be used to flood someone's inbox.
CHAT_PASSWORD_RESETS_PER_HOUR = env_int("CHAT_PASSWORD_RESETS_PER_HOUR", 5, minimum=1)
# The address people reach the site by, for the links in emails sent outside a request (the
# notification emails); a password-reset email links to the host its form was posted to.
CHAT_SITE_URL = env_str("CHAT_SITE_URL", "http://127.0.0.1:8000")
if not is_origin(CHAT_SITE_URL):
    raise ImproperlyConfigured(f"CHAT_SITE_URL must be scheme://host[:port] (no path), not {CHAT_SITE_URL!r}.")
# Notification emails (chat/notifications.py): a direct message still unread after this many
# seconds gets its recipient one email, with everything else waiting for them then.
CHAT_EMAIL_NOTIFY_DELAY_SECONDS = env_int("CHAT_EMAIL_NOTIFY_DELAY_SECONDS", 600, minimum=0)
# How often each worker looks for such messages; 0: never (run `manage.py send_notification_emails`
# from cron instead). Every worker may look: a row lock per user makes each email go out once.
CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS = env_int("CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS", 60, minimum=0)
# The demo accounts and their password on the login page: on with DJANGO_DEBUG=1 and in `make
# run`, and even then only while the seeded demo accounts exist (chat/web/accounts.py).
CHAT_DEMO_LOGINS = env_bool("CHAT_DEMO_LOGINS", DEBUG)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files (nginx serves them from there in the compose deployment).
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or BASE_DIR / "var" / "static")  # made by prepare_checkout
# Uploaded files (chat/files.py, docs/files.md). CHAT_STORAGE=local keeps them under CHAT_MEDIA_ROOT
# (with several workers, one folder they all share); s3 in a bucket of an S3-compatible service.
# They are never served from a public URL: /files/<id>/<name> checks who asks (chat/api/downloads.py).
CHAT_UPLOAD_MAX_BYTES = env_int("CHAT_UPLOAD_MAX_BYTES", 25 * 1024 * 1024, minimum=1)
CHAT_UPLOAD_MAX_FILES = env_int("CHAT_UPLOAD_MAX_FILES", 10, minimum=1, maximum=100)  # files on one message
# What one user's uploads may weigh over 24 hours (0: no limit): chat.files.check_quota.
CHAT_UPLOAD_BYTES_PER_DAY = env_int("CHAT_UPLOAD_BYTES_PER_DAY", 1024 * 1024 * 1024, minimum=0)
# Uploads no message took are removed after this many hours (`manage.py purge_uploads`, and every
# worker every CHAT_UPLOAD_PURGE_INTERVAL_SECONDS; 0: never, run the command from cron instead).
CHAT_UPLOAD_PENDING_HOURS = env_int("CHAT_UPLOAD_PENDING_HOURS", 24, minimum=1)
CHAT_UPLOAD_PURGE_INTERVAL_SECONDS = env_int("CHAT_UPLOAD_PURGE_INTERVAL_SECONDS", 3600, minimum=0)
CHAT_MEDIA_ROOT = Path(env_str("CHAT_MEDIA_ROOT") or BASE_DIR / "var" / "uploads")  # made by prepare_checkout
MEDIA_ROOT = CHAT_MEDIA_ROOT
CHAT_STORAGE = env_choice("CHAT_STORAGE", "local", ["local", "s3"])
# An internal nginx location (e.g. "/_protected/") that serves CHAT_MEDIA_ROOT: the worker checks
# who asks and answers with X-Accel-Redirect, nginx sends the bytes. Empty: the worker streams them.
CHAT_FILES_ACCEL_REDIRECT = env_str("CHAT_FILES_ACCEL_REDIRECT")
if CHAT_FILES_ACCEL_REDIRECT and not (
    CHAT_FILES_ACCEL_REDIRECT.startswith("/") and CHAT_FILES_ACCEL_REDIRECT.endswith("/")
):
    raise ImproperlyConfigured(
        f"CHAT_FILES_ACCEL_REDIRECT must be a path that starts and ends with '/', not {CHAT_FILES_ACCEL_REDIRECT!r}."
    )
CHAT_S3_BUCKET = env_str("CHAT_S3_BUCKET")
CHAT_S3_ENDPOINT_URL = env_str("CHAT_S3_ENDPOINT_URL")  # empty: AWS itself
CHAT_S3_REGION = env_str("CHAT_S3_REGION")
# How long the address a download is redirected to works (chat/api/downloads.py, S3 storage only).
CHAT_S3_URL_SECONDS = env_int("CHAT_S3_URL_SECONDS", 60, minimum=5, maximum=3600)
if CHAT_STORAGE == "s3":
    if not CHAT_S3_BUCKET:
        raise ImproperlyConfigured("CHAT_STORAGE is s3 but CHAT_S3_BUCKET is not set: name the bucket.")
    _keys = {name: env_str(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    _missing = [name for name, value in _keys.items() if not value]
    if len(_missing) == 1:  # neither: boto3 finds credentials itself (an instance role)
        raise ImproperlyConfigured(f"CHAT_STORAGE is s3 and {_missing[0]} is not set: set both keys, or neither.")
    if CHAT_S3_ENDPOINT_URL and not is_origin(CHAT_S3_ENDPOINT_URL):
        raise ImproperlyConfigured(f"CHAT_S3_ENDPOINT_URL must be scheme://host[:port], not {CHAT_S3_ENDPOINT_URL!r}.")
    _DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CHAT_S3_BUCKET,
            "endpoint_url": CHAT_S3_ENDPOINT_URL or None,
            "region_name": CHAT_S3_REGION or None,
            "access_key": _keys["AWS_ACCESS_KEY_ID"] or None,
            "secret_key": _keys["AWS_SECRET_ACCESS_KEY"] or None,
            # Private objects, reached only through short-lived signed addresses.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": CHAT_S3_URL_SECONDS,
            "file_overwrite": False,
            "addressing_style": "path" if CHAT_S3_ENDPOINT_URL else None,
            "signature_version": "s3v4",
        },
    }
    # Downloads are redirected to the bucket (chat/api/downloads.py): the page's images come from there.
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"].append(CHAT_S3_ENDPOINT_URL or "https://*.amazonaws.com")
else:
    _DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(CHAT_MEDIA_ROOT), "base_url": None},
    }
STORAGES = {
    "default": _DEFAULT_STORAGE,
    "staticfiles": {
        # Compressed copies after `collectstatic`; no manifest, so a checkout needs no build step.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
# Serve from the finders too, so a checkout works before collectstatic has run.
WHITENOISE_USE_FINDERS = True
# Static file names carry no content hash: browsers keep them an hour, then revalidate (ETag),
# as nginx does in the compose deployment.
WHITENOISE_MAX_AGE = 3600

# Chat limits (docs/protocol.md, Limits, lists them with their defaults).
CHAT_MAX_BODY = env_int("CHAT_MAX_BODY", 4000, minimum=1)
CHAT_MAX_FRAME_BYTES = env_int("CHAT_MAX_FRAME_BYTES", 65536, minimum=1024)
CHAT_RATE_PER_SECOND = env_int("CHAT_RATE_PER_SECOND", 10, minimum=1)
CHAT_RATE_BURST = env_int("CHAT_RATE_BURST", 20, minimum=1)
CHAT_ABUSE_LIMIT = env_int("CHAT_ABUSE_LIMIT", 50, minimum=1)  # bad frames a minute before 4429
# Per user, across all their sockets on one worker (in-process counts; each worker counts its own):
# a shared frame bucket on top of each socket's (default 20/s, bursts of 40: two busy tabs pass,
# twenty do not multiply the socket limit by twenty), and at most CHAT_MAX_SOCKETS_PER_USER open
# sockets (default 20; the next is accepted, then closed with 4408).
CHAT_USER_RATE_PER_SECOND = env_int("CHAT_USER_RATE_PER_SECOND", 20, minimum=1)
CHAT_USER_RATE_BURST = env_int("CHAT_USER_RATE_BURST", 40, minimum=1)
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 20, minimum=1)
# Outgoing bytes a socket may have waiting in the worker (Twisted's write buffer, beyond what the
# kernel took) when the next frame is due; past it the socket is closed with 4008, so a client that
# stops reading cannot make the worker hold an ever-growing backlog. Default 4 MiB: above a full
# catch-up (500 messages of 4000 characters), so a slow but reading client is not cut off.
CHAT_MAX_SEND_BUFFER_BYTES = env_int("CHAT_MAX_SEND_BUFFER_BYTES", 4 * 1024 * 1024, minimum=65536)
# Rooms one socket may be in at once (default 50); a join beyond it gets `forbidden`.
CHAT_MAX_ROOMS_PER_SOCKET = env_int("CHAT_MAX_ROOMS_PER_SOCKET", 50, minimum=1)
# Searches a user may make a minute (default 30), over HTTP (per worker process, as the API's rate)
# and over their sockets on one worker (a bucket holding a third of it): a search reads far more
# than a send (docs/search.md).
CHAT_SEARCH_PER_MINUTE = env_int("CHAT_SEARCH_PER_MINUTE", 30, minimum=1)
# The echo socket (/ws/echo/, no login, any Origin): on with DJANGO_DEBUG=1 (and in `make run`),
# off otherwise, so a production deployment serves it only when asked to. It has the limits above,
# counted per client address (chat/realtime/consumers.py EchoConsumer).
CHAT_ECHO_ENABLED = env_bool("CHAT_ECHO_ENABLED", DEBUG)
CHAT_TYPING_INTERVAL = 2.0
CHAT_CATCHUP_LIMIT = 500
# Each worker re-checks its sockets' sessions this often, in case a session-end event was lost.
CHAT_SESSION_SWEEP_SECONDS = env_int("CHAT_SESSION_SWEEP_SECONDS", 30, minimum=1)
# Each worker checks the session of every new cookie socket against the database this long after
# it opened, in one query for all the sockets opened meanwhile (a handshake served from the shared
# cache makes no query: this bounds how long a copy left there by a failed removal lets one in).
CHAT_SESSION_VERIFY_SECONDS = 0.5
# How often each worker re-checks the API tokens of its token sockets (revocation closes them).
CHAT_TOKEN_SWEEP_SECONDS = env_int("CHAT_TOKEN_SWEEP_SECONDS", 5, minimum=1)
# How often each worker re-checks that its sockets' users may still be in their rooms (a ban, a
# removal from a private room, an archived room), in case the event that says so was lost.
CHAT_ACCESS_SWEEP_SECONDS = env_int("CHAT_ACCESS_SWEEP_SECONDS", 5, minimum=1)

# The HTTP API (chat/api/): bearer tokens or the session (with CSRF), JSON only, errors with the
# socket's codes, and per user the socket's rate averaged over a minute (CHAT_RATE_PER_SECOND x 60
# requests a minute, counted per worker process in its local cache).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "chat.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "chat.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": f"{CHAT_RATE_PER_SECOND * 60}/min", "search": f"{CHAT_SEARCH_PER_MINUTE}/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Channels Chat HTTP API",
    "DESCRIPTION": "Rooms and messages over HTTP, beside the WebSocket protocol (docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The notification level appears in several serializers: one schema component for all of them.
    "ENUM_NAME_OVERRIDES": {"NotifyLevelEnum": "chat.models.NotifyLevel.values"},
}
# With REDIS_URL, presence lives in Redis: each worker refreshes its sockets' entries every third of
# CHAT_PRESENCE_TTL seconds, so the sockets of a worker that died without a word (SIGKILL, power
# loss) drop out of every online list within about CHAT_PRESENCE_TTL + a third of it.
CHAT_PRESENCE_TTL = env_int("CHAT_PRESENCE_TTL", 15, minimum=3)
# Rooms with at most this many users online get the whole online list on each join and leave; larger
# ones get the changes (batched per worker over CHAT_PRESENCE_BATCH_SECONDS) and a `joined` whose
# list is capped at this many names (docs/protocol.md, Presence).
CHAT_PRESENCE_LIST_MAX = env_int("CHAT_PRESENCE_LIST_MAX", 100, minimum=2, maximum=1000)
CHAT_PRESENCE_BATCH_SECONDS = env_float("CHAT_PRESENCE_BATCH_SECONDS", 1.0, minimum=0.01, maximum=10.0)
# /metrics answers loopback and private addresses; with this set, also any client that sends
# `Authorization: Bearer <token>` (a Prometheus outside the private network).
CHAT_METRICS_TOKEN = env_str("CHAT_METRICS_TOKEN", min_length=16)

LOG_LEVEL = env_choice("DJANGO_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])

# `json`: one JSON object a line (time, level, logger, message, request_id / connection_id when
# known, exception), for log shippers. The ids come from chat.ops.logs (contextvars) through its filter.
LOG_FORMAT = env_choice("DJANGO_LOG_FORMAT", "plain", ["plain", "json"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "chat.ops.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "chat.ops.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # axes logs every login at INFO; failures and lockouts come at WARNING.
    "loggers": {"django.channels.server": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
