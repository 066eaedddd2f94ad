"""The catalog: what an app sells (products) and for how much (prices).

A product names the entitlements it unlocks (``premium``); each of its prices
is an amount in integer minor units of one currency, billed once or every
month or year. Purchases, entitlements held by users and the ledger are not
part of the catalog.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

ENTITLEMENT_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def validate_entitlement_keys(value: Any) -> None:
    """A list of distinct slug-like keys: lower-case letters, digits, ``_``, ``.``, ``-``."""
    if not isinstance(value, list):
        raise ValidationError('Give a list of entitlement keys, such as ["premium"].', code="invalid")
    for key in value:
        if not isinstance(key, str) or not ENTITLEMENT_KEY_PATTERN.match(key):
            raise ValidationError(
                "%(key)r is not an entitlement key: 1 to 64 lower-case letters, digits, '_', '.' or '-', "
                "starting with a letter or digit.",
                code="invalid",
                params={"key": key},
            )
    if len(set(value)) != len(value):
        raise ValidationError("Each entitlement key may appear once.", code="duplicate")


class Product(models.Model):
    """Something an app sells: it unlocks ``entitlements`` and has one or more prices."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    active = models.BooleanField(
        default=True, help_text="Only active products are listed in the catalog (GET payments/products)."
    )
    entitlements = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_entitlement_keys],
        help_text='What buying it unlocks, as a JSON list of keys: ["premium"].',
    )
    sort_order = models.PositiveIntegerField(default=0, help_text="The catalog lists lower numbers first.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "created_at", "id"]
        indexes = [
            models.Index(fields=["active", "sort_order", "created_at", "id"], name="payments_catalog_order")
        ]

    def __str__(self) -> str:
        return self.name


class Price(models.Model):
    """One way to pay for a product: ``amount`` minor units of ``currency``, once or per interval."""

    class Interval(models.TextChoices):
        MONTH = "month"
        YEAR = "year"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="prices")
    amount = models.PositiveBigIntegerField(
        help_text="In the currency's minor units (cents): 499 is 4.99 EUR; 0 is free."
    )
    currency = models.CharField(
        max_length=3,
        validators=[RegexValidator(CURRENCY_PATTERN, "An ISO 4217 code in capitals, such as EUR.")],
        help_text="ISO 4217, in capitals (EUR, USD, JPY).",
    )
    interval = models.CharField(
        max_length=8,
        choices=Interval.choices,
        null=True,
        blank=True,
        help_text="Billed every month or year; empty for a one-time payment.",
    )
    active = models.BooleanField(default=True, help_text="Only active prices are listed in the catalog.")
    # The same price at the payment providers; used once purchases are built.
    stripe_price_id = models.CharField(max_length=255, blank=True, default="")
    apple_product_id = models.CharField(max_length=255, blank=True, default="")
    google_product_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["amount", "created_at", "id"]
        constraints = [
            # A provider's id names one of our prices, so a purchase maps back to exactly one.
            models.UniqueConstraint(
                fields=["stripe_price_id"],
                condition=~Q(stripe_price_id=""),
                name="payments_price_stripe_unique",
            ),
            models.UniqueConstraint(
                fields=["apple_product_id"],
                condition=~Q(apple_product_id=""),
                name="payments_price_apple_unique",
            ),
            models.UniqueConstraint(
                fields=["google_product_id"],
                condition=~Q(google_product_id=""),
                name="payments_price_google_unique",
            ),
        ]

    def __str__(self) -> str:
        every = f" / {self.interval}" if self.interval else ""
        return f"{self.product.name}: {self.amount} {self.currency}{every}"
