"""Settings of the naive baseline (bench/naive): the Channels tutorial's chat, nothing else.

It comes from the official Channels tutorial (https://channels.readthedocs.io/en/stable/tutorial/,
parts 2 and 3: "mysite" with the "chat" app), reduced to what its WebSocket path needs: Daphne,
Channels and channels_redis.core.RedisChannelLayer on REDIS_URL. No database, no sessions, no auth.
`make bench` serves it with 2 Daphne processes on one redis-server and compares the product with it.
"""

import os

SECRET_KEY = "naive-baseline-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["daphne", "channels"]
ASGI_APPLICATION = "naive.asgi.application"
DATABASES = {}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
    },
}
