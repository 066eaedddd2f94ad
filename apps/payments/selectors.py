"""Reads of the catalog."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from apps.payments.models import Price, Product


def product_list_active() -> QuerySet[Product]:
    """Active products, each with its active prices (cheapest first) in ``active_prices``.

    Two queries whatever the page size: the products, then their prices.
    """
    prices = Price.objects.filter(active=True).order_by("amount", "created_at", "id")
    return Product.objects.filter(active=True).prefetch_related(
        Prefetch("prices", queryset=prices, to_attr="active_prices")
    )


def product_exists(*, name: str) -> bool:
    """Whether a product (active or not) with this exact name is in the catalog."""
    return Product.objects.filter(name=name).exists()
