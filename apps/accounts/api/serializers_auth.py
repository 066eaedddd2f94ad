"""Request and response shapes of ``/api/v1/auth/`` (sessions, sign-in, MFA, passwords).

Request serializers are strict: an unknown field, a missing one or a value of
the wrong JSON type is ``400 validation_error`` (DRF's ``CharField`` would
quietly turn ``123`` into ``"123"``).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from apps.accounts.models import Device, Session, User
from apps.accounts.services.mfa import mfa_is_enabled
from apps.accounts.services.sessions import IssuedTokens


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)  # type: ignore[no-any-return]


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"invalid": "Enter a valid email address."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)  # type: ignore[no-any-return]


class StrictSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Rejects fields it does not know, so typos and stray data do not pass silently."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _password_field() -> StrictCharField:
    return StrictCharField(max_length=256, trim_whitespace=False, style={"input_type": "password"})


# --- Requests ---------------------------------------------------------------


class DeviceInputSerializer(StrictSerializer):
    device_id = StrictCharField(max_length=128)
    name = StrictCharField(max_length=128, required=False, allow_blank=True, default="")
    platform = serializers.ChoiceField(choices=Device.Platform.values)


class RegisterInputSerializer(StrictSerializer):
    email = StrictEmailField(max_length=254)
    password = _password_field()
    display_name = StrictCharField(max_length=150, required=False, allow_blank=True, default="")
    locale = StrictCharField(max_length=16, required=False, allow_blank=True, default="")
    device = DeviceInputSerializer()


class EmailVerifyInputSerializer(StrictSerializer):
    token = StrictCharField(max_length=256)


class LoginInputSerializer(StrictSerializer):
    # Not validated as an address: whatever was typed, a wrong one is 401 like a wrong password.
    email = StrictCharField(max_length=254)
    password = _password_field()
    device = DeviceInputSerializer()
    otp = StrictCharField(max_length=32, required=False, allow_null=True, allow_blank=True, default=None)


class LoginMfaInputSerializer(StrictSerializer):
    mfa_token = StrictCharField(max_length=2048)
    code = StrictCharField(max_length=32)


class ChallengeVerifyInputSerializer(StrictSerializer):
    code = StrictCharField(max_length=16)


class EmptyInputSerializer(StrictSerializer):
    """A body that must be empty (or ``{}``)."""


class RefreshInputSerializer(StrictSerializer):
    refresh = StrictCharField(max_length=512)


class PasswordResetInputSerializer(StrictSerializer):
    email = StrictEmailField(max_length=254)


class PasswordResetConfirmInputSerializer(StrictSerializer):
    token = StrictCharField(max_length=256)
    password = _password_field()


class PasswordChangeInputSerializer(StrictSerializer):
    old_password = _password_field()
    new_password = _password_field()


class TotpConfirmInputSerializer(StrictSerializer):
    code = StrictCharField(max_length=16)


class TotpDisableInputSerializer(StrictSerializer):
    code = StrictCharField(max_length=32, required=False)
    password = StrictCharField(max_length=256, required=False, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("code") and not attrs.get("password"):
            raise serializers.ValidationError(
                {"code": ["Give a current code (or recovery code) or the password."]}
            )
        return attrs


# --- Responses --------------------------------------------------------------


class AuthUserSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    mfa_enabled = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = (
            "id",
            "email",
            "email_verified",
            "display_name",
            "locale",
            "timezone",
            "mfa_enabled",
            "created_at",
        )
        read_only_fields = fields

    def get_mfa_enabled(self, obj: User) -> bool:
        return mfa_is_enabled(user=obj)


class TokenPairSerializer(serializers.Serializer):  # type: ignore[type-arg]
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    access_expires_at = serializers.DateTimeField()
    session_id = serializers.CharField()


class SignedInSerializer(TokenPairSerializer):
    user = AuthUserSerializer()


def token_pair_data(tokens: IssuedTokens, *, with_user: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "access": tokens.access,
        "refresh": tokens.refresh,
        "token_type": "Bearer",
        "expires_in": max(0, int((tokens.access_expires_at - timezone.now()).total_seconds())),
        "access_expires_at": tokens.access_expires_at,
        "session_id": tokens.session_id,
    }
    if with_user and tokens.user is not None:
        data["user"] = tokens.user
    serializer = SignedInSerializer(data) if "user" in data else TokenPairSerializer(data)
    return serializer.data  # type: ignore[no-any-return]


class SessionDeviceSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    trusted = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = ("device_id", "name", "platform", "trusted")

    def get_trusted(self, obj: Device) -> bool:
        return obj.is_trusted


class SessionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    device = SessionDeviceSerializer()
    current = serializers.BooleanField(source="is_current")

    class Meta:
        model = Session
        fields = ("id", "device", "created_at", "last_seen_at", "ip", "current", "via", "user_agent")


class ChallengeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField()
    device = SessionDeviceSerializer()
    ip = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()

    def get_ip(self, obj: Any) -> str:
        from apps.accounts.services.sessions import ip_coarse

        return ip_coarse(obj.ip)


class ChallengePendingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.CharField()


class EmailVerifiedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user = AuthUserSerializer()


class TotpSetupSerializer(serializers.Serializer):  # type: ignore[type-arg]
    secret = serializers.CharField()
    otpauth_url = serializers.CharField()


class RecoveryCodesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    recovery_codes = serializers.ListField(child=serializers.CharField())
