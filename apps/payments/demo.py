"""Demo data: a product to see in GET /api/v1/payments/products."""

from __future__ import annotations

from django.db import transaction

from apps.payments.selectors import product_exists
from apps.payments.services import PriceSpec, product_create

DEMO_PRODUCT_NAME = "Keel Premium"
DEMO_PRICES: list[PriceSpec] = [
    {"amount": 499, "currency": "EUR", "interval": "month"},
    {"amount": 4999, "currency": "EUR", "interval": "year"},
]


def seed_demo_product() -> list[str]:
    """Add "Keel Premium" (entitlement ``premium``, 4.99 EUR a month or 49.99 EUR a year).

    Adds nothing when a product of that name exists, also an inactive one
    (staff may have switched it off on purpose).
    """
    with transaction.atomic():
        if product_exists(name=DEMO_PRODUCT_NAME):
            return [f"Demo product: {DEMO_PRODUCT_NAME} (exists)"]
        product_create(
            name=DEMO_PRODUCT_NAME,
            description="Everything in the app, without limits.",
            entitlements=["premium"],
            prices=DEMO_PRICES,
        )
    return [
        f"Created the demo product: {DEMO_PRODUCT_NAME}"
        " (entitlement premium; 4.99 EUR a month, 49.99 EUR a year)"
    ]
