"""Throttling: rates from THROTTLE_RATE_<SCOPE>, 429 throttled with Retry-After."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apps.core.exceptions import Throttled, problem_for_exception
from apps.core.throttling import throttle_hit
from config.settings.base import BASE_DIR, THROTTLE_DEFAULTS, _throttle_rate
from tests.factories import UserFactory

CONTRACT_SCOPES = {
    "anon",
    "user",
    "auth_login",
    "auth_register",
    "auth_password_reset",
    "auth_challenge",
    "auth_mfa",
    "ws_broadcast",
}


def test_every_scope_named_by_the_contract_has_a_default_rate():
    assert CONTRACT_SCOPES <= set(THROTTLE_DEFAULTS)
    assert all(THROTTLE_DEFAULTS[scope] for scope in CONTRACT_SCOPES)


def test_the_rate_comes_from_the_environment_variable_of_the_scope(monkeypatch):
    monkeypatch.delenv("THROTTLE_RATE_AUTH_LOGIN", raising=False)
    assert _throttle_rate("auth_login", "10/min") == "10/min"

    monkeypatch.setenv("THROTTLE_RATE_AUTH_LOGIN", "3/hour")
    assert _throttle_rate("auth_login", "10/min") == "3/hour"

    monkeypatch.setenv("THROTTLE_RATE_AUTH_LOGIN", "")
    assert _throttle_rate("auth_login", "10/min") is None  # empty: not throttled


def test_the_environment_reaches_drf_when_the_settings_load(tmp_path):
    env = {
        **os.environ,
        "THROTTLE_RATE_AUTH_REGISTER": "7/hour",
        "THROTTLE_RATE_WS_BROADCAST": "",
        "KEEL_VAR_DIR": str(tmp_path),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "import config.settings.base as s; r = s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'];"
        "print(r['auth_register'], r['ws_broadcast'], r['auth_login'])"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7/hour", "None", THROTTLE_DEFAULTS["auth_login"]]


def test_throttle_hit_raises_429_with_retry_after_once_the_rate_is_used(throttle_rates):
    throttle_rates(core_ident="3/min")

    for _ in range(3):
        throttle_hit(scope="core_ident", ident="account-1")
    with pytest.raises(Throttled) as caught:
        throttle_hit(scope="core_ident", ident="account-1")

    error = caught.value
    assert error.status_code == 429
    assert error.code == "throttled"
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    body, headers = problem_for_exception(error)
    assert body["status"] == 429
    assert body["code"] == "throttled"
    assert headers["Retry-After"] == error.headers["Retry-After"]


def test_throttle_hit_counts_each_ident_separately(throttle_rates):
    throttle_rates(core_ident="1/min")

    throttle_hit(scope="core_ident", ident="alice@example.com")
    throttle_hit(scope="core_ident", ident="bob@example.com")
    with pytest.raises(Throttled):
        throttle_hit(scope="core_ident", ident="alice@example.com")


def test_throttle_hit_keeps_the_ident_out_of_the_cache_keys(throttle_rates):
    from django.core.cache import cache

    throttle_rates(core_ident="5/min")
    throttle_hit(scope="core_ident", ident="carol@example.com")

    keys = list(cache._cache.keys())  # LocMemCache in tests
    assert keys
    assert not any("carol" in key for key in keys)


def test_a_scope_without_a_rate_is_not_throttled(throttle_rates):
    throttle_rates(core_ident=None)

    for _ in range(50):
        throttle_hit(scope="core_ident", ident="account-2")
    throttle_hit(scope="core_unknown_scope", ident="account-2")


@pytest.mark.urls("tests.core.urls")
@pytest.mark.django_db
def test_ip_scoped_throttle_limits_each_ip_signed_in_or_not(api_client, throttle_rates):
    throttle_rates(core_test_ip="2/min")
    path = "/api/v1/test/ip-throttled"

    first = [api_client.get(path, REMOTE_ADDR="10.0.0.1").status_code for _ in range(2)]
    api_client.force_authenticate(UserFactory())
    signed_in = api_client.get(path, REMOTE_ADDR="10.0.0.1")
    other_ip = api_client.get(path, REMOTE_ADDR="10.0.0.2")

    assert first == [200, 200]
    assert signed_in.status_code == 429
    assert signed_in.json()["code"] == "throttled"
    assert 1 <= int(signed_in["Retry-After"]) <= 60
    assert other_ip.status_code == 200


@pytest.mark.urls("tests.core.urls")
@pytest.mark.django_db
def test_the_default_anonymous_rate_applies_to_every_api_view(api_client, throttle_rates):
    throttle_rates(anon="2/min")

    statuses = [api_client.get("/api/v1/test/render").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


@pytest.mark.urls("tests.core.urls")
@pytest.mark.django_db
def test_a_changed_rate_applies_at_once(api_client, throttle_rates):
    throttle_rates(core_test_ip="1/min")
    path = "/api/v1/test/ip-throttled"
    assert api_client.get(path).status_code == 200
    assert api_client.get(path).status_code == 429

    throttle_rates(core_test_ip="5/min")

    assert api_client.get(path).status_code == 200
