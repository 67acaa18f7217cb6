# Hashroom in one container, in production mode: migrations run at start, then the app
# serves on 0.0.0.0:8000 (it refuses to start without HASHROOM_SECRET_KEY).
# The SQLite database lives on the /data volume (see docker-compose.single.yml); the
# cluster in docker-compose.yml points DATABASE_URL at PostgreSQL instead.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/hashroom

# The locked dependencies first (exact versions, each file checked against its hash), so a
# code change keeps that layer; then the app itself, without letting pip resolve anything.
# Migrations come last: editing one keeps both install layers.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-deps .
COPY alembic.ini ./
COPY alembic ./alembic

# An unprivileged user owns /data; a new named volume copies that ownership on first mount.
RUN useradd --system --no-create-home --home-dir /srv/hashroom hashroom \
    && mkdir /data && chown hashroom:hashroom /data
USER hashroom
VOLUME ["/data"]

ENV HASHROOM_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_URL=sqlite:////data/hashroom.db
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["sh", "-c", "alembic upgrade head && exec python -m app"]
