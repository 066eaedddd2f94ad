"""The demo product (make run), the catalog admin and the finance role."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client

from apps.core.demo import demo_seed
from apps.payments.demo import seed_demo_product
from apps.payments.models import Price, Product
from apps.payments.services import product_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PRODUCTS = "/admin/payments/product/"
PRICES = "/admin/payments/price/"


def test_the_demo_product_is_added_once(api_client):
    first = seed_demo_product()
    second = seed_demo_product()

    assert first == [
        "Created the demo product: Keel Premium (entitlement premium; 4.99 EUR a month, 49.99 EUR a year)"
    ]
    assert second == ["Demo product: Keel Premium (exists)"]
    product = Product.objects.get()
    assert product.name == "Keel Premium" and product.entitlements == ["premium"]
    assert sorted(product.prices.values_list("amount", "currency", "interval")) == [
        (499, "EUR", "month"),
        (4999, "EUR", "year"),
    ]
    listed = api_client.get("/api/v1/payments/products").json()["results"]
    assert [(p["name"], [x["amount"] for x in p["prices"]]) for p in listed] == [
        ("Keel Premium", [499, 4999])
    ]


def test_a_switched_off_demo_product_is_not_added_again():
    seed_demo_product()
    Product.objects.update(active=False)

    seed_demo_product()

    assert Product.objects.count() == 1 and Price.objects.count() == 2


def test_make_run_seeds_the_demo_product():
    assert "apps.payments.demo.seed_demo_product" in settings.KEEL_DEMO_SEEDERS

    lines = demo_seed()

    assert any("Keel Premium" in line for line in lines)
    assert Product.objects.filter(name="Keel Premium").exists()


def _staff(*, superuser: bool = False, role: str | None = None) -> Client:
    member = UserFactory(is_staff=True, is_superuser=superuser)
    if role:
        member.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(member)
    return client


def _catalog() -> Product:
    return product_create(
        name="Pro",
        entitlements=["premium"],
        prices=[
            {"amount": 499, "currency": "EUR", "interval": "month", "stripe_price_id": "price_pro_monthly"},
            {"amount": 4999, "currency": "EUR", "interval": "year", "active": False},
        ],
    )


def test_staff_see_products_with_filters_search_and_inline_prices():
    product = _catalog()
    product_create(name="Lifetime", entitlements=["lifetime"], prices=[], active=False)
    client = _staff(superuser=True)

    listing = client.get(PRODUCTS)
    active_only = client.get(PRODUCTS, {"active__exact": "1"})
    by_stripe_id = client.get(PRODUCTS, {"q": "price_pro_monthly"})
    detail = client.get(f"{PRODUCTS}{product.pk}/change/")
    prices = client.get(PRICES, {"currency": "EUR"})

    assert listing.status_code == 200
    assert [p.name for p in listing.context["cl"].result_list] == ["Pro", "Lifetime"]
    assert [p.name for p in active_only.context["cl"].result_list] == ["Pro"]
    assert [p.name for p in by_stripe_id.context["cl"].result_list] == ["Pro"]
    assert listing.context["cl"].result_list[0]._active_prices == 1
    assert detail.status_code == 200 and b"prices-0-amount" in detail.content
    assert prices.status_code == 200 and prices.context["cl"].result_count == 2


def test_staff_add_a_product_with_its_prices_and_bad_input_is_refused():
    client = _staff(superuser=True)
    form = {
        "name": "Team",
        "description": "",
        "entitlements": '["premium", "team"]',
        "active": "on",
        "sort_order": "1",
        "prices-TOTAL_FORMS": "1",
        "prices-INITIAL_FORMS": "0",
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "1000",
        "prices-0-amount": "999",
        "prices-0-currency": "usd",
        "prices-0-interval": "",
        "prices-0-active": "on",
    }

    refused = client.post(f"{PRODUCTS}add/", form)

    assert refused.status_code == 200 and not Product.objects.filter(name="Team").exists()

    accepted = client.post(f"{PRODUCTS}add/", {**form, "prices-0-currency": "USD"})

    assert accepted.status_code == 302
    price = Price.objects.get(product__name="Team")
    assert (price.amount, price.currency, price.interval) == (999, "USD", None)


def test_finance_can_view_the_catalog_but_not_change_it():
    product = _catalog()
    client = _staff(role="finance")

    assert client.get(PRODUCTS).status_code == 200
    assert client.get(PRICES).status_code == 200
    detail = client.get(f"{PRODUCTS}{product.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.get(f"{PRODUCTS}add/").status_code == 403
    client.post(f"{PRODUCTS}{product.pk}/delete/", {"post": "yes"})
    assert Product.objects.filter(pk=product.pk).exists()


def test_the_finance_group_holds_the_catalog_view_permissions():
    permissions = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name="finance").permissions.select_related("content_type")
    }

    assert {"payments.view_product", "payments.view_price"} <= permissions
    assert not {p for p in permissions if p.startswith("payments.") and not p.startswith("payments.view_")}


def test_staff_without_a_role_cannot_see_the_catalog():
    client = _staff()

    assert client.get(PRODUCTS).status_code == 403
