"""The catalog as the API shows it (contract section 6)."""

from __future__ import annotations

from rest_framework import serializers

from apps.payments.models import Price


class PriceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(read_only=True)
    amount = serializers.IntegerField(
        read_only=True, help_text="In the currency's minor units: 499 is 4.99 EUR."
    )
    currency = serializers.CharField(read_only=True, help_text="ISO 4217, in capitals.")
    interval = serializers.ChoiceField(
        choices=Price.Interval.choices,
        allow_null=True,
        read_only=True,
        help_text="Billed every month or year; null for a one-time payment.",
    )


class ProductSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    prices = PriceSerializer(many=True, read_only=True, source="active_prices")
    entitlements = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="What buying it unlocks, such as premium."
    )
