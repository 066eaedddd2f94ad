"""Throttles backed by the shared cache (Redis in production).

Rates come from ``THROTTLE_RATE_<SCOPE>`` (see ``config/settings/base.py``);
a scope whose rate is empty is not throttled. DRF's classes are kept; only the
answer changes to Keel's ``429 throttled`` with ``Retry-After`` (rendered by
the exception handler). Rates are read from the settings on every check, not
frozen at import time as DRF does, so a changed setting applies at once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework import throttling
from rest_framework.settings import api_settings

from apps.core.exceptions import Throttled


def throttle_rate(scope: str | None) -> str | None:
    """The configured rate of ``scope`` (``"10/min"``), or None when it is not limited."""
    if not scope:
        return None
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    return str(rate) if rate else None


class _KeelThrottleMixin:
    def get_rate(self) -> str | None:
        return throttle_rate(getattr(self, "scope", None))


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
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": f"ip_{self.scope}", "ident": self.get_ident(request)}


class _IdentRateThrottle(throttling.SimpleRateThrottle):
    """DRF's sliding window over the cache, keyed by an arbitrary ident."""

    num_requests: int
    duration: int

    def __init__(self, *, scope: str, rate: str, ident: str) -> None:
        self.scope = scope
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)  # type: ignore[assignment]
        # Hashed: the ident may be an email address, which stays out of the cache.
        digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
        self.key = f"throttle_ident_{scope}_{digest}"

    def hit(self) -> None:
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            raise Throttled(wait=self.wait())
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


def throttle_hit(*, scope: str, ident: str) -> None:
    """Count one attempt for ``ident`` (an account, say) and raise when over the rate.

    Services use this for limits that are not per request, such as failed
    logins per account. Raises :class:`~apps.core.exceptions.Throttled`
    (``429 throttled`` with ``Retry-After``) once ``ident`` has used up the
    scope's rate; the refused attempt is not counted.
    """
    rate = throttle_rate(scope)
    if rate is None:
        return
    _IdentRateThrottle(scope=scope, rate=rate, ident=ident).hit()
