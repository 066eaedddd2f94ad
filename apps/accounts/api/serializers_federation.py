"""Request and response shapes of social sign-in and the OAuth token endpoint."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.accounts.api.serializers_auth import (
    DeviceInputSerializer,
    SignedInSerializer,
    StrictCharField,
    StrictSerializer,
)


class SocialLoginInputSerializer(StrictSerializer):
    id_token = StrictCharField(max_length=16384, help_text="The ID token the platform SDK returned.")
    nonce = StrictCharField(
        max_length=512,
        required=False,
        allow_null=True,
        default=None,
        help_text=(
            "The raw nonce of this sign-in. Google: the value passed to the SDK. Apple: the raw value "
            "whose SHA-256 (hex) was passed to ASAuthorizationAppleIDRequest.nonce."
        ),
    )
    device = DeviceInputSerializer()


class SocialSignedInSerializer(SignedInSerializer):
    created = serializers.BooleanField(help_text="Whether this sign-in created the account.")


class OAuthTokenInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``POST auth/token`` (form or JSON). Errors are answered in RFC 6749 form, not problem+json.

    Not strict about unknown parameters: RFC 6749 (3.1) has the server ignore them.
    """

    grant_type = StrictCharField(max_length=64)
    code = StrictCharField(max_length=512, required=False)
    code_verifier = StrictCharField(max_length=128, required=False)
    redirect_uri = StrictCharField(max_length=2048, required=False)
    client_id = StrictCharField(max_length=255, required=False)
    client_secret = StrictCharField(max_length=512, required=False, trim_whitespace=False)
    refresh_token = StrictCharField(max_length=512, required=False)
    scope = StrictCharField(max_length=512, required=False)

    def to_internal_value(self, data: Any) -> Any:
        # A form body arrives as a QueryDict: a repeated parameter is an error (RFC 6749 3.2).
        if hasattr(data, "lists"):
            repeated = sorted(key for key, values in data.lists() if len(values) > 1)
            if repeated:
                raise serializers.ValidationError({name: ["Repeated parameter."] for name in repeated})
            data = {key: values[0] for key, values in data.lists()}
        return super().to_internal_value(data)


class OAuthTokenSerializer(serializers.Serializer):  # type: ignore[type-arg]
    access_token = serializers.CharField(help_text="A Keel access token, as from auth/login.")
    refresh_token = serializers.CharField(help_text="A Keel refresh token (rotates on use).")
    token_type = serializers.CharField(help_text="Always Bearer.")
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    id_token = serializers.CharField(help_text="OpenID Connect ID token (RS256, see /.well-known/jwks.json).")
    scope = serializers.CharField(required=False)


class OAuthErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    error = serializers.CharField()
    error_description = serializers.CharField()
