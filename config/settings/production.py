"""Production: the same settings as base, with the safety checks switched on.

Nothing here changes behaviour silently: it only hardens transport and
refuses to start on an unsafe configuration.
"""

import sys

from cryptography.fernet import Fernet

from .base import *
from .base import (
    ALLOWED_HOSTS,
    BLIND_INDEX_KEY,
    DEBUG,
    FIELD_ENCRYPTION_KEYS,
    INSECURE_DEFAULT_SECRET_KEY,
    SECRET_KEY,
    env,
)


def _refuse(message: str) -> None:
    # One clear line for the operator instead of a traceback from deep inside
    # Django's settings machinery.
    sys.stderr.write(f"Keel refuses to start in production: {message}\n")
    raise SystemExit(78)  # EX_CONFIG


if DEBUG:
    _refuse("DJANGO_DEBUG is on; set DJANGO_DEBUG=false.")
if not SECRET_KEY or SECRET_KEY == INSECURE_DEFAULT_SECRET_KEY:
    _refuse("DJANGO_SECRET_KEY is missing or the default; set it to 50+ random characters.")
if len(SECRET_KEY) < 32:
    _refuse("DJANGO_SECRET_KEY is too short; set it to 50+ random characters.")
if not ALLOWED_HOSTS:
    _refuse("DJANGO_ALLOWED_HOSTS is empty; set it to the host names Keel is served on.")
if not FIELD_ENCRYPTION_KEYS:
    _refuse("FIELD_ENCRYPTION_KEYS is empty; set it to a Fernet key (Fernet.generate_key()).")
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        _refuse("FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes).")
if len(BLIND_INDEX_KEY) < 32:
    _refuse("BLIND_INDEX_KEY is missing or short; set it to 32+ random characters.")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Health checks and metrics are scraped over plain HTTP inside the network
# (apps.core.health.OperationalEndpointsMiddleware answers them before the redirect).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Browsers preload HSTS for a domain only once it is submitted to their list
# (hstspreload.org); the directive alone changes nothing. false leaves it out.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
