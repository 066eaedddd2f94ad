"""Background jobs of the federation part of accounts (listed in ``CELERY_IMPORTS``)."""

from __future__ import annotations

import structlog
from celery import shared_task

from apps.accounts.services import oauth

logger = structlog.get_logger(__name__)


@shared_task(
    name="apps.accounts.tasks_federation.oauth_authorizations_expire",
    soft_time_limit=120,
    time_limit=180,
)
def oauth_authorizations_expire() -> int:
    """Revoke the sessions of authorization codes that expired unused; safe to run twice."""
    revoked = oauth.oauth_authorizations_expire()
    if revoked:
        logger.info("oauth_codes_expired", sessions_revoked=revoked)
    return revoked
