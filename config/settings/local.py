"""Development and the embedded default used by ``make run``."""

from .base import *
from .base import ALLOWED_HOSTS, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]
# Staff sign in to the admin without an authenticator here (on in production).
ADMIN_REQUIRE_MFA = env.bool("ADMIN_REQUIRE_MFA", default=False)
