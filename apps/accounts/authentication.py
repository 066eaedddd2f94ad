"""DRF authentication for ``Authorization: Bearer <access>``."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from apps.core.exceptions import InvalidToken


class BearerAccessTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise InvalidToken("The Authorization header must be 'Bearer <access token>'.")
        from apps.accounts.models import User
        from apps.accounts.selectors import access_token_identify

        identity = access_token_identify(token=header[1].decode("latin-1"))
        if identity is None:
            raise InvalidToken()
        user = User.objects.get(pk=identity.user_id)
        return user, identity

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
