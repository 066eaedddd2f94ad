"""ETag on single-object GETs, If-None-Match -> 304, If-Match -> 412 on a stale tag."""

from __future__ import annotations

import re

import pytest

from apps.accounts.models import User
from apps.core.http import make_etag
from tests.factories import UserFactory

pytestmark = [pytest.mark.urls("tests.core.urls"), pytest.mark.django_db]


@pytest.fixture
def target():
    return UserFactory(display_name="Original")


def url(user) -> str:
    return f"/api/v1/test/users/{user.pk}"


def current_etag(api_client, user) -> str:
    response = api_client.get(url(user))
    assert response.status_code == 200
    return response["ETag"]


def test_a_single_object_get_carries_a_strong_etag(api_client, target):
    response = api_client.get(url(target))

    assert response.status_code == 200
    assert re.fullmatch(r'"[\x21\x23-\x7e]+"', response["ETag"])
    assert response.json()["display_name"] == "Original"


@pytest.mark.parametrize(
    "header",
    ["{tag}", "W/{tag}", '"stale", {tag}', 'W/"other",W/{tag}', "*"],
    ids=["exact", "weak-prefix", "list", "weak-list", "star"],
)
def test_if_none_match_naming_the_current_tag_is_304_without_a_body(api_client, target, header):
    tag = current_etag(api_client, target)

    response = api_client.get(url(target), HTTP_IF_NONE_MATCH=header.format(tag=tag))

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == tag


def test_if_none_match_with_another_tag_gets_the_object(api_client, target):
    response = api_client.get(url(target), HTTP_IF_NONE_MATCH='"something-else"')

    assert response.status_code == 200
    assert response.json()["id"] == str(target.pk)


def test_a_stale_if_match_is_412_and_nothing_changes(api_client, target):
    stale = current_etag(api_client, target)
    api_client.patch(url(target), {"display_name": "Changed by someone else"}, format="json")

    response = api_client.patch(url(target), {"display_name": "Mine"}, format="json", HTTP_IF_MATCH=stale)

    assert response.status_code == 412
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "precondition_failed"
    target.refresh_from_db()
    assert target.display_name == "Changed by someone else"


def test_a_matching_if_match_updates_and_returns_the_new_tag(api_client, target):
    tag = current_etag(api_client, target)

    response = api_client.patch(url(target), {"display_name": "Mine"}, format="json", HTTP_IF_MATCH=tag)

    assert response.status_code == 200
    assert response["ETag"] != tag
    assert User.objects.get(pk=target.pk).display_name == "Mine"
    # The old tag is stale now.
    again = api_client.patch(url(target), {"display_name": "Again"}, format="json", HTTP_IF_MATCH=tag)
    assert again.status_code == 412


@pytest.mark.parametrize("header", [None, "*", '"stale", {tag}'], ids=["absent", "star", "list"])
def test_if_match_passes_when_absent_star_or_listing_the_current_tag(api_client, target, header):
    tag = current_etag(api_client, target)
    headers = {} if header is None else {"HTTP_IF_MATCH": header.format(tag=tag)}

    response = api_client.patch(url(target), {"display_name": "Passed"}, format="json", **headers)

    assert response.status_code == 200
    assert User.objects.get(pk=target.pk).display_name == "Passed"


def test_a_weak_if_match_never_matches(api_client, target):
    tag = current_etag(api_client, target)

    response = api_client.patch(
        url(target), {"display_name": "Weak"}, format="json", HTTP_IF_MATCH=f"W/{tag}"
    )

    assert response.status_code == 412
    assert User.objects.get(pk=target.pk).display_name == "Original"


def test_make_etag_is_stable_and_always_a_valid_header_value():
    assert make_etag("abc", 3) == '"abc-3"'
    assert make_etag("abc", 3) == make_etag("abc", 3)
    assert make_etag("abc", 3) != make_etag("abc", 4)
    for odd in ('has "quotes"', "spaces and ümlauts", "new\nline"):
        tag = make_etag(odd, 1)
        assert re.fullmatch(r'"[\x21\x23-\x7e]+"', tag)
        assert tag != make_etag(odd, 2)
