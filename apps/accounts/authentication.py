"""DRF authentication for ``Authorization: Bearer <access>``.

The token's signature, algorithm, type and expiry are checked without the
database; then one query reads the user together with its session, which
must exist, belong to the user and not be revoked (the database answers, so
a revocation or a deactivation applies to the very next request). The
session's ``last_seen_at`` is written at most once per
``ACCOUNT_SESSION_TOUCH_SECONDS``, and only looked up in the cache when the
row says it is due.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

# DRF's exception (rendered as ``401 invalid_token``) so that the answer carries
# ``WWW-Authenticate: Bearer``.
_INVALID = "The access token is invalid or expired."


class BearerAccessTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <access token>'.")
        from apps.accounts.selectors import access_token_user
        from apps.accounts.services.sessions import session_touch

        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_INVALID) from None
        found = access_token_user(token=token)
        if found is None:
            raise AuthenticationFailed(_INVALID)
        if found.touch_due and found.identity.session_id:
            session_touch(session_id=found.identity.session_id)
        return found.user, found.identity

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class BearerAccessTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The OpenAPI security scheme of :class:`BearerAccessTokenAuthentication`."""

    target_class = "apps.accounts.authentication.BearerAccessTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The `access` token from auth/login, auth/register or auth/token/refresh.",
        }
