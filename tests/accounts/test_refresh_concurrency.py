"""Races on PostgreSQL: the row locks keep one token, one code and one address to one winner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.accounts.models import RefreshToken, Session, User
from apps.accounts.services.challenges import device_challenge_verify
from apps.accounts.services.registration import EmailTaken, user_register
from apps.accounts.services.sessions import session_start, tokens_refresh
from apps.core.exceptions import KeelError
from tests.accounts.auth_helpers import DEVICE_A, DEVICE_B, STRONG_PASSWORD, last_code_for
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(work: Callable[[], Any], threads: int = 4) -> list[Any]:
    """Run ``work`` in several threads released at once; returns results or raised errors."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work()
        except Exception as exc:  # collected for the assertions
            results[index] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


def test_concurrent_refreshes_of_one_token_all_get_the_same_pair():
    user = UserFactory()
    issued = session_start(user=user, device=DEVICE_A, ip=None, user_agent=None, trust_device=True)

    results = _race(lambda: tokens_refresh(refresh=issued.refresh, ip=None))

    assert all(not isinstance(r, Exception) for r in results), results
    assert len({(r.access, r.refresh) for r in results}) == 1
    assert RefreshToken.objects.filter(session_id=issued.session_id).count() == 2
    assert Session.objects.get(pk=issued.session_id).revoked_at is None


def test_concurrent_verifications_of_one_code_open_one_session(
    mailoutbox, django_capture_on_commit_callbacks
):
    from apps.accounts.services.login import DeviceVerificationRequired, login_with_password

    user = UserFactory(email="race@example.com")
    session_start(user=user, device=DEVICE_A, ip=None, user_agent=None, trust_device=True)
    with pytest.raises(DeviceVerificationRequired) as raised:
        login_with_password(
            email="race@example.com",
            password="correct horse battery staple",
            device=DEVICE_B,
            otp=None,
            ip=None,
            user_agent=None,
        )
    challenge_id = raised.value.extra["challenge_id"]
    code = last_code_for("race@example.com")

    results = _race(
        lambda: device_challenge_verify(challenge_id=challenge_id, code=code, ip=None, user_agent=None)
    )

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, KeelError)]
    assert len(winners) == 1
    assert len(losers) == 3 and {e.code for e in losers} == {"challenge_expired"}
    assert Session.objects.filter(user=user, device__device_id=DEVICE_B["device_id"]).count() == 1


def test_concurrent_registrations_of_one_address_make_one_account():
    results = _race(
        lambda: user_register(
            email="twice@example.com",
            password=STRONG_PASSWORD,
            display_name="",
            device=DEVICE_A,
            ip=None,
            user_agent=None,
        )
    )

    assert len([r for r in results if not isinstance(r, Exception)]) == 1
    assert all(isinstance(r, EmailTaken) for r in results if isinstance(r, Exception)), results
    assert User.objects.filter(email="twice@example.com").count() == 1
