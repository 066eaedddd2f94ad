# One image for every Keel process; the command picks the role:
#   web     gunicorn -c deploy/gunicorn.conf.py config.wsgi           (default)
#   ws      uvicorn config.asgi:application --host 0.0.0.0 --port 8001
#   worker  celery -A config worker
#   beat    celery -A config beat
# deploy/compose.yml runs them all behind a reverse proxy.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: compilers and headers, only to build the virtualenv -----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements/base.txt requirements/production.txt /tmp/requirements/
RUN pip install --upgrade pip \
    && pip install -r /tmp/requirements/production.txt

# --- runtime: the virtualenv and the code, no build tools ------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    KEEL_VAR_DIR=/app/var \
    PORT=8000

RUN groupadd --system --gid 10001 keel \
    && useradd --system --uid 10001 --gid keel --home-dir /app --no-create-home --shell /usr/sbin/nologin keel

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code belongs to root and is read-only for the app user; only var/ is writable.
COPY manage.py ./
COPY config ./config
COPY apps ./apps
COPY templates ./templates
COPY locale ./locale
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py

# Static files are collected into the image (whitenoise serves them). The
# values below exist only for this build step; production refuses to start
# without real ones.
RUN DJANGO_SECRET_KEY=build-only-collectstatic-not-a-secret-0123456789 \
    DJANGO_ALLOWED_HOSTS=localhost \
    FIELD_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    BLIND_INDEX_KEY=build-only-blind-index-not-a-secret-0123 \
    python manage.py collectstatic --noinput \
    && python -m compileall -q config apps \
    && mkdir -p /tmp/keel-prometheus \
    && chown -R keel:keel /app/var /tmp/keel-prometheus

USER keel

EXPOSE 8000 8001

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"

CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"]
