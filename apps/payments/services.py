"""Writes to the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, TypedDict

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from apps.core.exceptions import ValidationFailed
from apps.payments.models import Price, Product


class PriceSpec(TypedDict):
    amount: int
    currency: str
    interval: str | None
    active: NotRequired[bool]
    stripe_price_id: NotRequired[str]
    apple_product_id: NotRequired[str]
    google_product_id: NotRequired[str]


def _validated(instance: Product | Price, *, prefix: str = "") -> None:
    try:
        instance.full_clean(exclude=["product"] if isinstance(instance, Price) else None)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            errors={
                f"{prefix}{field}": [str(m) for m in messages] for field, messages in exc.message_dict.items()
            }
        ) from exc


def product_create(
    *,
    name: str,
    entitlements: list[str],
    prices: Sequence[PriceSpec],
    description: str = "",
    sort_order: int = 0,
    active: bool = True,
) -> Product:
    """Add a product with its prices, all or nothing.

    Invalid input (an entitlement key that is not slug-like, a negative amount,
    a currency that is not three capitals) raises ``ValidationFailed`` with
    the fields named (``prices.1.currency``) and writes nothing.
    """
    product = Product(
        name=name, description=description, entitlements=entitlements, sort_order=sort_order, active=active
    )
    _validated(product)
    rows = []
    for index, spec in enumerate(prices):
        price = Price(product=product, **spec)
        _validated(price, prefix=f"prices.{index}.")
        rows.append(price)
    with transaction.atomic():
        product.save()
        for price in rows:
            price.save()
    return product
