"""Staff roles are groups created by a data migration, with their default permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


def _permissions(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_support_role():
    assert _permissions("support") == {
        "accounts.view_user",
        "accounts.force_logout_user",
        "accounts.view_session",
        "accounts.view_device",
        "accounts.view_auditevent",
        "accounts.view_dataexport",
    }


def test_finance_role():
    # The payments app adds viewing its catalog (its own data migration).
    assert _permissions("finance") == {"accounts.view_user", "payments.view_product", "payments.view_price"}


def test_content_moderator_role():
    assert _permissions("content_moderator") == {
        "accounts.view_user",
        "content.view_collection",
        "content.view_document",
        "content.change_document",
        "content.delete_document",
        "content.view_file",
        "content.delete_file",
    }


def test_no_role_can_change_accounts_or_the_audit_log():
    for role in ("support", "finance", "content_moderator"):
        granted = _permissions(role)
        assert not {
            p
            for p in granted
            if p.startswith("accounts.") and p.split(".")[1].startswith(("change_", "delete_", "add_"))
        }
