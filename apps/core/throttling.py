"""Throttles backed by the shared cache (Redis in production).

Rates come from ``THROTTLE_RATE_<SCOPE>``; a scope whose rate is empty is not
throttled. DRF's classes are kept; only the answer changes to Keel's
``429 throttled`` with ``Retry-After`` (rendered by the exception handler).
"""

from __future__ import annotations

from typing import Any

from rest_framework import throttling

from apps.core.exceptions import Throttled


class _KeelThrottleMixin:
    def get_rate(self) -> str | None:
        rates = self.THROTTLE_RATES  # type: ignore[attr-defined]
        return rates.get(self.scope)  # type: ignore[attr-defined, no-any-return]


class AnonRateThrottle(_KeelThrottleMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_KeelThrottleMixin, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(_KeelThrottleMixin, throttling.ScopedRateThrottle):
    pass


class IPScopedThrottle(_KeelThrottleMixin, throttling.SimpleRateThrottle):
    """Per client IP for a view's ``throttle_scope``, whether or not signed in."""

    def allow_request(self, request: Any, view: Any) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def throttle_hit(*, scope: str, ident: str) -> None:
    """Count one attempt for ``ident`` (an account, say) and raise when over the rate.

    Services use this for limits that are not per request, such as failed
    logins per account.
    """
    throttle = throttling.SimpleRateThrottle.__new__(throttling.SimpleRateThrottle)
    throttle.scope = scope
    throttle.rate = throttling.SimpleRateThrottle.THROTTLE_RATES.get(scope)
    if not throttle.rate:
        return
    throttle.num_requests, throttle.duration = throttle.parse_rate(throttle.rate)
    throttle.key = f"throttle_ident_{scope}_{ident}"
    throttle.history = throttle.cache.get(throttle.key, [])
    throttle.now = throttle.timer()
    while throttle.history and throttle.history[-1] <= throttle.now - throttle.duration:
        throttle.history.pop()
    if len(throttle.history) >= throttle.num_requests:
        raise Throttled(wait=throttle.wait())
    throttle.history.insert(0, throttle.now)
    throttle.cache.set(throttle.key, throttle.history, throttle.duration)
