"""Catalog validation: entitlement keys, amounts, currencies, intervals; all or nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from apps.core.exceptions import ValidationFailed
from apps.payments.models import Price, Product
from apps.payments.services import product_create

pytestmark = pytest.mark.django_db

MONTHLY = {"amount": 499, "currency": "EUR", "interval": "month"}


@pytest.mark.parametrize(
    "entitlements",
    [["Premium"], ["has space"], [""], ["-premium"], ["premium", "premium"], "premium", [7], ["x" * 65]],
)
def test_entitlement_keys_must_be_distinct_slugs(entitlements):
    with pytest.raises(ValidationFailed) as raised:
        product_create(name="Pro", entitlements=entitlements, prices=[MONTHLY])

    assert "entitlements" in raised.value.errors
    assert not Product.objects.exists()


def test_slug_like_entitlement_keys_are_accepted():
    product = product_create(
        name="Pro", entitlements=["premium", "ads_free", "storage.100gb", "tier-2"], prices=[]
    )

    product.refresh_from_db()
    assert product.entitlements == ["premium", "ads_free", "storage.100gb", "tier-2"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", -1),
        ("currency", "eur"),
        ("currency", "EURO"),
        ("currency", "E1R"),
        ("currency", ""),
        ("interval", "week"),
    ],
)
def test_a_bad_price_names_its_field_and_writes_nothing(field, value):
    good = {"amount": 4999, "currency": "EUR", "interval": "year"}

    with pytest.raises(ValidationFailed) as raised:
        product_create(name="Pro", entitlements=["premium"], prices=[good, {**MONTHLY, field: value}])

    assert raised.value.code == "validation_error"
    assert f"prices.1.{field}" in raised.value.errors
    assert not Product.objects.exists() and not Price.objects.exists()


def test_free_and_one_time_prices_are_valid():
    product = product_create(
        name="Starter",
        entitlements=[],
        prices=[
            {"amount": 0, "currency": "USD", "interval": None},
            {"amount": 1999, "currency": "JPY", "interval": None},
        ],
    )

    assert sorted(product.prices.values_list("amount", "interval")) == [(0, None), (1999, None)]


def test_the_database_refuses_a_negative_amount():
    product = product_create(name="Pro", entitlements=["premium"], prices=[])

    with pytest.raises(IntegrityError):
        Price.objects.create(product=product, amount=-5, currency="EUR")


def test_a_provider_id_belongs_to_one_price_but_blank_ones_repeat():
    product_create(
        name="Pro",
        entitlements=["premium"],
        prices=[{**MONTHLY, "stripe_price_id": "price_123"}, {**MONTHLY, "amount": 599}],
    )

    with pytest.raises(ValidationFailed) as raised:
        product_create(name="Other", entitlements=[], prices=[{**MONTHLY, "stripe_price_id": "price_123"}])

    assert raised.value.errors
    assert Product.objects.filter(name="Other").exists() is False
    assert Price.objects.filter(stripe_price_id="").count() == 1


def test_model_validation_of_a_price_entered_directly():
    product = product_create(name="Pro", entitlements=["premium"], prices=[])
    price = Price(product=product, amount=100, currency="usd", interval="month")

    with pytest.raises(ValidationError) as raised:
        price.full_clean()

    assert set(raised.value.message_dict) == {"currency"}
