# The chat worker image: Daphne serving config.asgi:application, as a non-root user.
# Built by docker-compose.yml (`docker compose build`); the same image runs the one-shot
# `migrate` service and every `web` replica.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAPHNE=/venv/bin/daphne \
    DJANGO_STATIC_ROOT=/srv/static
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin chat \
    && mkdir -p /srv/static /srv/uploads \
    && chown chat /srv/static /srv/uploads
COPY --from=build /venv /venv
WORKDIR /app
COPY . .
USER chat
EXPOSE 8000
# bin/daphne-worker adds the flags every worker needs (64 KiB message limit, close and handshake timeouts).
CMD ["bin/daphne-worker", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers"]
