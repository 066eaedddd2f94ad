"""Admin of the catalog: products with their prices inline.

The ``finance`` staff role may view it (granted by migration 0002).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from apps.payments.models import Price, Product


class PriceInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Price
    extra = 0
    fields = (
        "amount",
        "currency",
        "interval",
        "active",
        "stripe_price_id",
        "apple_product_id",
        "google_product_id",
    )


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "active", "entitlement_keys", "active_price_count", "sort_order", "updated_at")
    list_filter = ("active", "prices__currency", "prices__interval")
    search_fields = (
        "name",
        "description",
        "prices__stripe_price_id",
        "prices__apple_product_id",
        "prices__google_product_id",
    )
    ordering = ("sort_order", "created_at")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("id", "name", "description", "entitlements", "active", "sort_order", "created_at", "updated_at")
    inlines = (PriceInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return (
            super()
            .get_queryset(request)
            .annotate(_active_prices=Count("prices", filter=Q(prices__active=True), distinct=True))
        )

    @admin.display(description="entitlements")
    def entitlement_keys(self, product: Product) -> str:
        return ", ".join(product.entitlements)

    @admin.display(description="active prices", ordering="_active_prices")
    def active_price_count(self, product: Any) -> int:
        return int(product._active_prices)


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("product", "amount", "currency", "interval", "active", "updated_at")
    list_filter = ("active", "currency", "interval")
    search_fields = ("product__name", "stripe_price_id", "apple_product_id", "google_product_id")
    list_select_related = ("product",)
    autocomplete_fields = ("product",)
    readonly_fields = ("id", "created_at", "updated_at")
    ordering = ("product__sort_order", "product__name", "amount")
