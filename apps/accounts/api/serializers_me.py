"""Request and response shapes of ``me``, ``me/export`` and ``DELETE me``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers

from apps.accounts.services.profile import locale_normalize, phone_normalize, timezone_validate


class StrictCharField(serializers.CharField):
    """A string, and only a string: numbers and booleans are a type error, not coerced."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)  # type: ignore[no-any-return]


class StrictSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Rejects fields it does not know, so a typo is a 400 instead of silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _checked(check: Callable[..., str], value: str) -> str:
    try:
        return check(value=value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from exc


class MePatchSerializer(StrictSerializer):
    display_name = StrictCharField(max_length=150, allow_blank=True, required=False)
    avatar_file_id = StrictCharField(max_length=64, allow_blank=True, allow_null=True, required=False)
    locale = StrictCharField(max_length=35, required=False)
    timezone = StrictCharField(max_length=64, required=False)
    phone = StrictCharField(max_length=32, allow_blank=True, allow_null=True, required=False)

    def validate_locale(self, value: str) -> str:
        return _checked(locale_normalize, value)

    def validate_timezone(self, value: str) -> str:
        return _checked(timezone_validate, value)

    def validate_phone(self, value: str | None) -> str | None:
        return _checked(phone_normalize, value) if value else value


class MeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    email = serializers.EmailField()
    email_verified = serializers.BooleanField()
    display_name = serializers.CharField()
    avatar = serializers.JSONField(allow_null=True, help_text="Null or the file object (signed urls).")
    locale = serializers.CharField()
    timezone = serializers.CharField()
    mfa_enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    phone = serializers.CharField(required=False, help_text="E.164; only present when set.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not data.get("phone"):
            data.pop("phone", None)
        return data


class MeDeleteSerializer(StrictSerializer):
    password = StrictCharField(required=False, allow_blank=True, max_length=4096, trim_whitespace=False)


class MeDeleteAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.CharField(help_text="Always 'deactivated'.")
    erase_after = serializers.DateTimeField()


class ExportRequestSerializer(StrictSerializer):
    """``POST me/export`` takes no fields; anything sent is a mistake worth reporting."""


class ExportCreatedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    export_id = serializers.CharField()


class ExportStatusSerializer(serializers.Serializer):  # type: ignore[type-arg]
    export_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "ready", "failed"])
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    size = serializers.IntegerField(allow_null=True)
    download_url = serializers.CharField(allow_null=True, help_text="Signed; works without the token.")
    download_url_expires_at = serializers.DateTimeField(allow_null=True)
