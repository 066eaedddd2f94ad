"""Settings for the test suite: fast hashing, in-memory cache and channel layer.

``DATABASE_URL`` still decides the database, so CI runs the suite on
PostgreSQL; without it the suite runs on SQLite.
"""

from .base import *
from .base import REST_FRAMEWORK, env

DEBUG = False
SECRET_KEY = "keel-test-secret-key-not-for-production"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests of the admin MFA switch it on themselves.
ADMIN_REQUIRE_MFA = False
# Tests clear the shared cache between them; a per-process copy would outlive it
# (the tests of that copy switch it on themselves).
CONTENT_COLLECTION_LOCAL_CACHE_SECONDS = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Throttles are exercised by tests that lower them explicitly.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
        "anon": "100000/min",
        "user": "100000/min",
    },
}
