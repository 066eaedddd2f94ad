from __future__ import annotations

import secrets

from django.conf import settings

from apps.accounts.models import User


def seed_demo_staff() -> list[str]:
    """The staff login printed once, on the run that creates it."""
    email = settings.DEMO_STAFF_EMAIL
    if User.objects.filter(email__iexact=email).exists():
        return [f"Staff login: {email} (password printed when it was created)"]
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(email=email, password=password, display_name="Keel staff")
    return [
        "Created the staff login for the admin (shown only this once):",
        f"  email:    {email}",
        f"  password: {password}",
    ]
