"""Settings shared by every environment, read from the environment (django-environ).

Integrations switch on when their variables are set: PostgreSQL with
``DATABASE_URL``, Redis (cache, channel layer, Celery broker) with
``REDIS_URL``, S3 with ``AWS_STORAGE_BUCKET_NAME``, SMTP with ``EMAIL_URL``,
Sentry with ``SENTRY_DSN``, OpenTelemetry with ``OTEL_EXPORTER_OTLP_ENDPOINT``.
Without them Keel runs on its embedded default: SQLite, local files, a cache
and a Celery broker on the local disk.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("KEEL_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
# A .env file is a convenience for developers; the environment always wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------

INSECURE_DEFAULT_SECRET_KEY = "keel-insecure-development-key-change-me"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
KEEL_PUBLIC_URL = env.str("KEEL_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # Django's admin with the MFA-aware site (apps/accounts/admin_mfa.py).
    "apps.accounts.admin_apps.KeelAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "channels",
    "oauth2_provider",
    "apps.core",
    "apps.accounts",
    "apps.content",
    "apps.notifications",
    "apps.payments",
    "apps.realtime",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.observability.ErrorReportingContextMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.AccessLogMiddleware",
    "apps.core.middleware.ProblemDefaultsMiddleware",
    # /healthz, /readyz, /metrics answer probes by IP over plain HTTP (before host checks).
    "apps.core.health.OperationalEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "accounts.User"
APPEND_SLASH = False  # the API accepts both forms itself; never redirect a POST

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

# --- Database ---------------------------------------------------------------

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'keel.sqlite3'}"),
}
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
if DATABASE_IS_POSTGRES:
    # Django's backend with a health check that polls the socket before it
    # asks the server (apps/core/db/postgresql/base.py): no SELECT 1 per request.
    DATABASES["default"]["ENGINE"] = "apps.core.db.postgresql"
    # Persistent connections: no connect per request under WSGI workers.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    # SQLite: wait for a writer instead of failing at once, and write-ahead
    # logging so the web process and the worker can read while one writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channel layer -------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's Redis cache, without a new client object per call (apps/core/cache.py).
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "keel",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "keel"},
        }
    }
else:
    # The file cache is shared by every process of the embedded default (web
    # and worker), so a throttle or a revoked session is seen by both.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": "keel",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -----------------------------------------------------------------

# The file-system broker of the embedded default names a host only so that
# Kombu does not warn about a missing one on every publish.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "queue"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }
    (VAR_DIR / "celery" / "control").mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=180)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Files and static -------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="us-east-1")
    AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
    AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="") or None
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_QUERYSTRING_EXPIRE = env.int("FILE_URL_TTL_SECONDS", default=900)
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files from the app directories when they were not collected
# (the embedded default never runs collectstatic).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

# --- Email ------------------------------------------------------------------

# EMAIL_URL forms: smtp://user:pass@host:25, smtp+tls://…:587 (STARTTLS; also
# smtps://, or smtp://…?email_use_tls=true), smtp+ssl://…:465, consolemail://,
# filemail:///absolute/dir.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
for _key in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"):
    if _email.get(_key):
        globals()[_key] = _email[_key]
if EMAIL_BACKEND.endswith("filebased.EmailBackend"):
    # django-environ drops the leading "/" of filemail:///var/mail; keep the path as written.
    EMAIL_FILE_PATH = urlparse(env.str("EMAIL_URL")).path or str(VAR_DIR / "mail")
# A query value arrives as a string: "false" must not switch TLS on.
EMAIL_USE_TLS = str(_email.get("EMAIL_USE_TLS", False)).lower() in ("1", "true", "yes", "on")
EMAIL_USE_SSL = str(_email.get("EMAIL_USE_SSL", False)).lower() in ("1", "true", "yes", "on")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Keel <no-reply@keel.local>")

# --- Auth -------------------------------------------------------------------

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", default=10)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_TTL_SECONDS", default=300)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_TTL_DAYS", default=30)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

# --- Internationalisation ---------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST framework ---------------------------------------------------------


def _throttle_rate(scope: str, default: str | None) -> str | None:
    value = env.str(f"THROTTLE_RATE_{scope.upper()}", default=default or "")
    return value or None


THROTTLE_DEFAULTS = {
    "anon": "120/min",
    "user": "1200/min",
    "auth_login": "10/min",
    "auth_register": "5/min",
    "auth_password_reset": "5/min",
    "auth_challenge": "10/min",
    "auth_mfa": "10/min",
    "ws_broadcast": "20/s",
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["apps.core.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.ORJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.BearerAccessTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.KeelCursorPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.core.throttling.AnonRateThrottle",
        "apps.core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        scope: _throttle_rate(scope, default) for scope, default in THROTTLE_DEFAULTS.items()
    },
    "EXCEPTION_HANDLER": "apps.core.exceptions.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Keel API",
    "DESCRIPTION": "The Keel mobile backend API (v1).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "PREPROCESSING_HOOKS": ["apps.core.api.schema.drop_trailing_slash_twins"],
    "ENUM_NAME_OVERRIDES": {
        "FileStatusEnum": "apps.content.models.files.File.Status",
    },
}

# --- CORS and security headers ---------------------------------------------

CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("etag", "x-request-id", "retry-after")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)

# --- Keel -------------------------------------------------------------------

IDEMPOTENCY_KEY_TTL = timedelta(hours=env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24))
# How long a request waits for a concurrent one with the same key before it
# answers 409 idempotency_in_progress (PostgreSQL lock_timeout).
IDEMPOTENCY_LOCK_TIMEOUT_MS = env.int("IDEMPOTENCY_LOCK_TIMEOUT_MS", default=10_000)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
KEEL_REQUIRE_SERVICES = env.bool("KEEL_REQUIRE_SERVICES", default=False)
DEMO_STAFF_EMAIL = env.str("DEMO_STAFF_EMAIL", default="admin@keel.local")
# Each app adds what a newcomer needs to try it; see apps/core/demo.py.
KEEL_DEMO_SEEDERS = [
    "apps.accounts.demo.seed_demo_staff",
]

# --- Observability ----------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # json | console
LOGGING_CONFIG = None  # apps.core.logging configures logging once, below.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="keel")
# A Celery worker serves its own /metrics here when set (0: off); see apps/core/metrics.py.
KEEL_WORKER_METRICS_PORT = env.int("KEEL_WORKER_METRICS_PORT", default=0)
KEEL_WORKER_METRICS_ADDR = env.str("KEEL_WORKER_METRICS_ADDR", default="0.0.0.0")  # noqa: S104 - inside a container

CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "core-purge-expired-idempotency-keys": {
        "task": "apps.core.tasks.idempotency_keys_purge_expired",
        "schedule": timedelta(hours=1),
    },
}

# --- Accounts ---------------------------------------------------------------

# Sessions and sign-in (apps/accounts/services/{sessions,login,challenges,mfa}.py).
# Step-up on a device the account has not verified: always | risk (only from
# an IP range the account has not used) | off.
ACCOUNT_STEP_UP_MODE = env.str("ACCOUNT_STEP_UP_MODE", default="always")
ACCOUNT_CHALLENGE_TTL_SECONDS = env.int("ACCOUNT_CHALLENGE_TTL_SECONDS", default=600)
ACCOUNT_CHALLENGE_MAX_ATTEMPTS = env.int("ACCOUNT_CHALLENGE_MAX_ATTEMPTS", default=5)
# A client that lost the answer of a refresh may retry with the old token this long.
ACCOUNT_REFRESH_GRACE_SECONDS = env.int("ACCOUNT_REFRESH_GRACE_SECONDS", default=10)
ACCOUNT_LOCKOUT_THRESHOLD = env.int("ACCOUNT_LOCKOUT_THRESHOLD", default=5)
ACCOUNT_LOCKOUT_WINDOW_SECONDS = env.int("ACCOUNT_LOCKOUT_WINDOW_SECONDS", default=900)
ACCOUNT_LOCKOUT_SECONDS = env.int("ACCOUNT_LOCKOUT_SECONDS", default=900)
ACCOUNT_MFA_TOKEN_TTL_SECONDS = env.int("ACCOUNT_MFA_TOKEN_TTL_SECONDS", default=300)
ACCOUNT_MFA_MAX_ATTEMPTS = env.int("ACCOUNT_MFA_MAX_ATTEMPTS", default=5)
ACCOUNT_TOTP_ISSUER = env.str("ACCOUNT_TOTP_ISSUER", default="Keel")
ACCOUNT_EMAIL_VERIFY_TTL_HOURS = env.int("ACCOUNT_EMAIL_VERIFY_TTL_HOURS", default=48)
ACCOUNT_PASSWORD_RESET_TTL_MINUTES = env.int("ACCOUNT_PASSWORD_RESET_TTL_MINUTES", default=60)
# Links in account emails; ``{token}`` is replaced. Point them at the app's
# universal link or deep link, which posts the token to the API.
ACCOUNT_EMAIL_VERIFY_URL = env.str(
    "ACCOUNT_EMAIL_VERIFY_URL", default=f"{KEEL_PUBLIC_URL}/verify-email?token={{token}}"
)
ACCOUNT_PASSWORD_RESET_URL = env.str(
    "ACCOUNT_PASSWORD_RESET_URL", default=f"{KEEL_PUBLIC_URL}/reset-password?token={{token}}"
)
# A session's last_seen_at is written at most this often.
ACCOUNT_SESSION_TOUCH_SECONDS = env.int("ACCOUNT_SESSION_TOUCH_SECONDS", default=60)

# Profile and privacy (apps/accounts/services/{profile,privacy,encryption}.py).
# Fernet keys for personal fields, comma-separated, the first one encrypts;
# derived from DJANGO_SECRET_KEY when unset (production refuses to start so).
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# HMAC key of the blind indexes that find encrypted values (a phone number).
BLIND_INDEX_KEY = env.str("BLIND_INDEX_KEY", default="")
# How long a download link of a data export works, and how long the file is kept.
EXPORT_URL_TTL_SECONDS = env.int("EXPORT_URL_TTL_SECONDS", default=900)
ACCOUNT_EXPORT_RETENTION_DAYS = env.int("ACCOUNT_EXPORT_RETENTION_DAYS", default=7)
# DELETE me: days between deactivation and erasure, and how recent a sign-in
# must be to delete the account without typing the password again.
ACCOUNT_DELETION_GRACE_DAYS = env.int("ACCOUNT_DELETION_GRACE_DAYS", default=30)
ACCOUNT_REAUTH_MAX_AGE_SECONDS = env.int("ACCOUNT_REAUTH_MAX_AGE_SECONDS", default=300)
# Every app adds the part of a user's data it owns: exporter ``fn(*, user) -> dict``
# (JSON-serialisable, keyed by section), eraser ``fn(*, user) -> None`` (idempotent).
KEEL_ACCOUNT_EXPORTERS: list[str] = ["apps.accounts.services.privacy.accounts_export_for_user"]
KEEL_ACCOUNT_ERASERS: list[str] = ["apps.accounts.services.privacy.accounts_erase_for_user"]
CELERY_BEAT_SCHEDULE["accounts-erase-deleted-accounts"] = {
    "task": "apps.accounts.tasks.accounts_erase_due",
    "schedule": timedelta(hours=1),
}
CELERY_BEAT_SCHEDULE["accounts-purge-expired-exports"] = {
    "task": "apps.accounts.tasks.data_exports_purge_expired",
    "schedule": timedelta(hours=6),
}

# Federation (apps/accounts/services/{social,oauth}.py, apps/accounts/admin_mfa.py).
# Sign in with Google / Apple: the ID token's audience must be one of these
# client ids (the iOS, Android and web client ids of the apps).
SOCIAL_GOOGLE_CLIENT_IDS: list[str] = env.list("SOCIAL_GOOGLE_CLIENT_IDS", default=[])
SOCIAL_APPLE_CLIENT_IDS: list[str] = env.list("SOCIAL_APPLE_CLIENT_IDS", default=[])
SOCIAL_GOOGLE_JWKS_URL = env.str(
    "SOCIAL_GOOGLE_JWKS_URL", default="https://www.googleapis.com/oauth2/v3/certs"
)
SOCIAL_APPLE_JWKS_URL = env.str("SOCIAL_APPLE_JWKS_URL", default="https://appleid.apple.com/auth/keys")
# Provider keys are cached this long (less when the provider's Cache-Control
# says so); a token signed with an unknown key id refetches them, at most once
# per interval. Stale keys are used while the provider is unreachable.
SOCIAL_JWKS_CACHE_SECONDS = env.int("SOCIAL_JWKS_CACHE_SECONDS", default=3600)
SOCIAL_JWKS_REFETCH_INTERVAL_SECONDS = env.int("SOCIAL_JWKS_REFETCH_INTERVAL_SECONDS", default=60)
SOCIAL_JWKS_TIMEOUT_SECONDS = env.float("SOCIAL_JWKS_TIMEOUT_SECONDS", default=5.0)
SOCIAL_CLOCK_SKEW_SECONDS = env.int("SOCIAL_CLOCK_SKEW_SECONDS", default=30)
# OAuth 2.1 authorization code + PKCE (django-oauth-toolkit keeps the clients
# and the codes; the tokens are Keel session tokens). The id_token is signed
# RS256 with OIDC_RSA_PRIVATE_KEY (PEM); without it a key is generated once
# under KEEL_VAR_DIR, which only suits a single host.
OIDC_ISSUER = env.str("OIDC_ISSUER", default=KEEL_PUBLIC_URL).rstrip("/")
OIDC_RSA_PRIVATE_KEY = env.str("OIDC_RSA_PRIVATE_KEY", default="").replace("\\n", "\n")
OIDC_ID_TOKEN_TTL_SECONDS = env.int("OIDC_ID_TOKEN_TTL_SECONDS", default=3600)
# How long the hosted login page waits for the user to finish signing in.
OAUTH_HOSTED_FLOW_TTL_SECONDS = env.int("OAUTH_HOSTED_FLOW_TTL_SECONDS", default=900)
OAUTH2_PROVIDER = {
    "OAUTH2_VALIDATOR_CLASS": "apps.accounts.services.oauth.KeelOAuth2Validator",
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": env.int("OAUTH_CODE_TTL_SECONDS", default=60),
    "PKCE_REQUIRED": True,
    "SCOPES": {
        "openid": "Sign in with Keel",
        "profile": "Your display name",
        "email": "Your email address",
        "offline_access": "Stay signed in",
    },
    "DEFAULT_SCOPES": ["openid"],
    # Private-use schemes (com.example.app:/callback) are allowed per client,
    # for the schemes of its registered redirect URIs (models/social.py).
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"],
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    # Keel adds ``iss`` to authorization responses itself, and its tokens are
    # Keel sessions (hashed refresh tokens with reuse detection): the toolkit
    # stores none.
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
}
# http redirect URIs are refused off the loopback interface (OAuthClient.clean).
SILENCED_SYSTEM_CHECKS: list[str] = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "oauth2_provider.W008"]
# Named explicitly: Keel's models point at django-oauth-toolkit's client model.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
# Staff need a confirmed authenticator (TOTP) to use the admin; on by default,
# switched off by the local and test settings.
ADMIN_REQUIRE_MFA = env.bool("ADMIN_REQUIRE_MFA", default=True)
# Sessions opened by hosted sign-ins whose code was never exchanged are revoked.
CELERY_BEAT_SCHEDULE["accounts-oauth-expire-codes"] = {
    "task": "apps.accounts.tasks_federation.oauth_authorizations_expire",
    "schedule": timedelta(minutes=5),
}
CELERY_IMPORTS: list[str] = [*globals().get("CELERY_IMPORTS", []), "apps.accounts.tasks_federation"]

# --- Content ----------------------------------------------------------------

# Documents (apps/content/services/documents.py). Anonymous list answers are
# cached this many seconds (server-side and by CDNs: Cache-Control public);
# every write to the collection invalidates the server-side copy at once.
CONTENT_PUBLIC_CACHE_TTL = env.int("CONTENT_PUBLIC_CACHE_TTL", default=30)
# The largest ``data`` of one document, in bytes of JSON (413 above it).
CONTENT_DOCUMENT_MAX_BYTES = env.int("CONTENT_DOCUMENT_MAX_BYTES", default=256 * 1024)
# Each process keeps collection definitions this many seconds in front of the
# shared cache (no cache round trip per request); a definition changed by
# another process is seen within it. 0: ask the shared cache every time.
CONTENT_COLLECTION_LOCAL_CACHE_SECONDS = env.float("CONTENT_COLLECTION_LOCAL_CACHE_SECONDS", default=5.0)
KEEL_DEMO_SEEDERS = [*KEEL_DEMO_SEEDERS, "apps.content.demo.seed_demo_collection"]
KEEL_ACCOUNT_EXPORTERS = globals().get("KEEL_ACCOUNT_EXPORTERS", []) + [
    "apps.content.services.privacy.documents_export_for_user",
]
KEEL_ACCOUNT_ERASERS = globals().get("KEEL_ACCOUNT_ERASERS", []) + [
    "apps.content.services.privacy.documents_erase_for_user",
]

# Files (apps/content/services/files.py). Every URL handed out (upload,
# download, thumbnails) is signed and expires after this many seconds.
FILE_URL_TTL_SECONDS = env.int("FILE_URL_TTL_SECONDS", default=900)
FILE_UPLOAD_TTL_SECONDS = env.int("FILE_UPLOAD_TTL_SECONDS", default=FILE_URL_TTL_SECONDS)
# Links inside a data export are read later than an API answer.
FILE_EXPORT_URL_TTL_SECONDS = env.int("FILE_EXPORT_URL_TTL_SECONDS", default=24 * 3600)
_FILE_IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/heic"]
_FILE_DEFAULT_TYPES = [*_FILE_IMAGE_TYPES, "application/pdf", "text/plain", "video/mp4"]
# Per purpose: the largest size in bytes (inclusive) and the allowed types,
# checked on the declared values at creation and on the real bytes later.
# FILE_MAX_SIZE_<PURPOSE> and FILE_ALLOWED_TYPES_<PURPOSE> override one;
# FILE_PURPOSES_EXTRA (JSON) adds purposes:
# {"document_scan": {"max_size": 10485760, "allowed_types": ["application/pdf"]}}.
FILE_DEFAULT_PURPOSE = env.str("FILE_DEFAULT_PURPOSE", default="attachment")
FILE_PURPOSES: dict[str, dict[str, object]] = {
    "attachment": {
        "max_size": env.int("FILE_MAX_SIZE_ATTACHMENT", default=25 * 1024 * 1024),
        "allowed_types": env.list("FILE_ALLOWED_TYPES_ATTACHMENT", default=_FILE_DEFAULT_TYPES),
    },
    "avatar": {
        "max_size": env.int("FILE_MAX_SIZE_AVATAR", default=5 * 1024 * 1024),
        "allowed_types": env.list("FILE_ALLOWED_TYPES_AVATAR", default=_FILE_IMAGE_TYPES),
    },
}
FILE_PURPOSES.update(env.json("FILE_PURPOSES_EXTRA", default={}))
# Longest side of the generated thumbnails, in pixels.
FILE_THUMBNAIL_SIZES = {
    "small": env.int("FILE_THUMBNAIL_SMALL_PX", default=256),
    "medium": env.int("FILE_THUMBNAIL_MEDIUM_PX", default=1024),
}
# Images with more pixels than this are rejected (decompression bombs).
FILE_IMAGE_MAX_PIXELS = env.int("FILE_IMAGE_MAX_PIXELS", default=50_000_000)
# Files never referenced by anything (a document's file field, an avatar)
# are deleted this long after their creation; deleted files' tombstones too.
FILE_UNREFERENCED_TTL_HOURS = env.int("FILE_UNREFERENCED_TTL_HOURS", default=24)
CELERY_BEAT_SCHEDULE["content-files-cleanup-unreferenced"] = {
    "task": "apps.content.tasks_files.files_cleanup_unreferenced",
    "schedule": timedelta(minutes=env.int("FILE_CLEANUP_INTERVAL_MINUTES", default=30)),
}
KEEL_ACCOUNT_EXPORTERS = globals().get("KEEL_ACCOUNT_EXPORTERS", []) + [
    "apps.content.services.files.files_export_for_user",
]
KEEL_ACCOUNT_ERASERS = globals().get("KEEL_ACCOUNT_ERASERS", []) + [
    "apps.content.services.files.files_erase_for_user",
]

# Offline sync (apps/content/services/sync.py, docs/sync.md). Every document
# write keeps its data per version (the base of three-way merges of offline
# edits), and every pushed mutation its result (replays): for this many days;
# a periodic job drops older ones (the change log stays).
SYNC_HISTORY_RETENTION_DAYS = env.int("SYNC_HISTORY_RETENTION_DAYS", default=30)
# Conflicts decided by a collection's policy (listed in the admin) are kept this long.
SYNC_CONFLICT_RETENTION_DAYS = env.int("SYNC_CONFLICT_RETENTION_DAYS", default=90)
# POST sync/push: at most this many mutations (400 above) and bytes of body (413 above).
SYNC_PUSH_MAX_MUTATIONS = env.int("SYNC_PUSH_MAX_MUTATIONS", default=500)
SYNC_PUSH_MAX_BYTES = env.int("SYNC_PUSH_MAX_BYTES", default=4 * 1024 * 1024)
CELERY_BEAT_SCHEDULE["content-sync-prune-history"] = {
    "task": "apps.content.tasks_sync.sync_history_prune",
    "schedule": timedelta(hours=env.int("SYNC_PRUNE_INTERVAL_HOURS", default=6)),
}
CELERY_IMPORTS = [*CELERY_IMPORTS, "apps.content.tasks_sync"]
KEEL_ACCOUNT_ERASERS = KEEL_ACCOUNT_ERASERS + [
    "apps.content.services.sync_history.sync_history_erase_for_user",
]

# --- Payments ---------------------------------------------------------------

# The catalog (GET payments/products) and its demo product; purchases come later.
KEEL_DEMO_SEEDERS = [*KEEL_DEMO_SEEDERS, "apps.payments.demo.seed_demo_product"]

# --- Realtime ---------------------------------------------------------------

# A WebSocket that has not sent a valid auth frame by then is closed (4401).
REALTIME_AUTH_TIMEOUT_SECONDS = env.float("REALTIME_AUTH_TIMEOUT_SECONDS", default=10.0)
# token_expiring goes out this long before the access token expires; at expiry the socket closes (4401).
REALTIME_TOKEN_EXPIRING_LEAD_SECONDS = env.float("REALTIME_TOKEN_EXPIRING_LEAD_SECONDS", default=30.0)
# Modules that register topic kinds, room kinds and event sources (docs/realtime.md).
REALTIME_PLUGINS: list[str] = env.list(
    "REALTIME_PLUGINS", default=["apps.content.services.realtime_topics", "apps.accounts.realtime"]
)
# Redis for fan-out across processes, the replay log, presence and the relay lease.
REALTIME_REDIS_URL = env.str("REALTIME_REDIS_URL", default=REDIS_URL)
# Key prefix in Redis; empty: derived from the database, so two sites can share a Redis.
REALTIME_REDIS_PREFIX = env.str("REALTIME_REDIS_PREFIX", default="")
# The replay log per stream (a collection, a user, a room) that serves `since`.
REALTIME_REPLAY_MAX_EVENTS = env.int("REALTIME_REPLAY_MAX_EVENTS", default=1000)
REALTIME_REPLAY_MAX_AGE_SECONDS = env.float("REALTIME_REPLAY_MAX_AGE_SECONDS", default=3600.0)
# The relay: poll interval (besides being woken after each commit), batch, gaps, lease.
REALTIME_RELAY_POLL_SECONDS = env.float("REALTIME_RELAY_POLL_SECONDS", default=0.5)
REALTIME_RELAY_BATCH = env.int("REALTIME_RELAY_BATCH", default=500)
REALTIME_RELAY_GAP_WAIT_SECONDS = env.float("REALTIME_RELAY_GAP_WAIT_SECONDS", default=1.0)
REALTIME_RELAY_LEASE_SECONDS = env.float("REALTIME_RELAY_LEASE_SECONDS", default=10.0)
REALTIME_RELAY_MAX_BACKLOG = env.int("REALTIME_RELAY_MAX_BACKLOG", default=100_000)
# Per socket: frame size, frames per second, subscriptions, rooms, send queue.
REALTIME_MAX_FRAME_BYTES = env.int("REALTIME_MAX_FRAME_BYTES", default=65536)
REALTIME_MAX_FRAMES_PER_SECOND = env.float("REALTIME_MAX_FRAMES_PER_SECOND", default=50.0)
REALTIME_MAX_SUBSCRIPTIONS = env.int("REALTIME_MAX_SUBSCRIPTIONS", default=100)
REALTIME_MAX_ROOMS = env.int("REALTIME_MAX_ROOMS", default=20)
REALTIME_SEND_QUEUE_MAX_FRAMES = env.int("REALTIME_SEND_QUEUE_MAX_FRAMES", default=2000)
REALTIME_SEND_QUEUE_MAX_BYTES = env.int("REALTIME_SEND_QUEUE_MAX_BYTES", default=8 * 1024 * 1024)
# Presence: the state object's size, and how long a member outlives its last heartbeat.
REALTIME_PRESENCE_STATE_MAX_BYTES = env.int("REALTIME_PRESENCE_STATE_MAX_BYTES", default=1024)
REALTIME_PRESENCE_TTL_SECONDS = env.float("REALTIME_PRESENCE_TTL_SECONDS", default=30.0)
REALTIME_OUTBOX_RETENTION_HOURS = env.int("REALTIME_OUTBOX_RETENTION_HOURS", default=24)
CELERY_BEAT_SCHEDULE["realtime-outbox-prune"] = {
    "task": "apps.realtime.tasks.realtime_outbox_prune",
    "schedule": timedelta(hours=1),
}

from apps.core.logging import configure_logging  # noqa: E402

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)
