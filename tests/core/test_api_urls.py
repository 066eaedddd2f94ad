"""Every /api/v1/ route: a Keel view (Idempotency-Key and friends), with and without a trailing slash.

The checks walk the real URL configuration, so an app that adds a plain DRF
view or forgets ``api_path`` fails here. They are also run against a URL
configuration that breaks both rules, to show that they notice.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.exceptions import Resolver404

from apps.core.api.views import IdempotentViewMixin

API_PREFIX = "api/v1/"
_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")
_SAMPLES = {
    "uuid": str(uuid.UUID(int=1)),
    "int": "1",
    "slug": "sample-slug",
    "str": "sample",
    "path": "sample/path",
}


def _walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        else:
            yield route, entry


def api_routes(urlconf: str) -> list[tuple[str, URLPattern]]:
    return [
        (route, pattern)
        for route, pattern in _walk(get_resolver(urlconf).url_patterns, "")
        if route.startswith(API_PREFIX)
    ]


def view_class(pattern_or_callback: Any) -> Any:
    callback = getattr(pattern_or_callback, "callback", pattern_or_callback)
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None) or callback


def sample_path(route: str) -> str:
    return "/" + _PARAMETER.sub(lambda m: _SAMPLES.get(m.group("converter") or "str", "sample"), route)


def views_missing_the_keel_base(urlconf: str) -> list[str]:
    return sorted(
        {
            f"{route} -> {getattr(view_class(pattern), '__qualname__', view_class(pattern))}"
            for route, pattern in api_routes(urlconf)
            if not (
                isinstance(view_class(pattern), type) and issubclass(view_class(pattern), IdempotentViewMixin)
            )
        }
    )


def routes_without_their_twin(urlconf: str) -> list[str]:
    """Routes whose other form (with/without the trailing slash) does not reach the same view."""
    resolver = get_resolver(urlconf)
    missing = []
    for route, pattern in api_routes(urlconf):
        path = sample_path(route)
        twin = path[:-1] if path.endswith("/") else f"{path}/"
        try:
            match = resolver.resolve(twin)
        except Resolver404:
            missing.append(f"{route}: {twin} is not routed")
            continue
        if view_class(match.func) is not view_class(pattern):
            missing.append(f"{route}: {twin} reaches another view")
    return missing


def test_every_api_v1_view_is_a_keel_view():
    assert api_routes("config.urls"), "no /api/v1/ routes found: the walk is broken"
    assert views_missing_the_keel_base("config.urls") == []


def test_every_api_v1_route_answers_with_and_without_a_trailing_slash():
    assert routes_without_their_twin("config.urls") == []


def test_the_checks_cover_the_test_views_too():
    assert views_missing_the_keel_base("tests.core.urls") == []
    assert routes_without_their_twin("tests.core.urls") == []


def test_the_checks_notice_a_plain_drf_view_and_a_missing_slash_form():
    assert views_missing_the_keel_base("tests.core.urls_unguarded") == [
        "api/v1/unguarded -> UnguardedAPIView",
        "api/v1/unguarded/ -> UnguardedAPIView",
    ]
    assert routes_without_their_twin("tests.core.urls_unguarded") == [
        "api/v1/slash-only/: /api/v1/slash-only is not routed"
    ]
