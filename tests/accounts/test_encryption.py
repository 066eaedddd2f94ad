"""Personal fields are encrypted at rest, found through a blind index, and re-encrypted on rotation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import connection

from apps.accounts.models import User
from apps.accounts.selectors import users_with_phone
from apps.accounts.services.encryption import DecryptionFailed, blind_index
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PHONE = "+4915112345678"


def _raw_column(user: User, column: str) -> str:
    table = connection.ops.quote_name(User._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s",
            [User._meta.pk.get_db_prep_value(user.pk, connection)],
        )
        return cursor.fetchone()[0]


def test_phone_column_holds_a_fernet_token_not_the_number():
    user = UserFactory(phone=PHONE)

    raw = _raw_column(user, "phone")
    assert PHONE not in raw
    assert "15112345678" not in raw
    assert raw.startswith("gAAAAA")  # Fernet token version byte, base64
    assert User.objects.get(pk=user.pk).phone == PHONE


def test_the_same_number_encrypts_differently_each_time():
    first = UserFactory(phone=PHONE)
    second = UserFactory(phone=PHONE)

    assert _raw_column(first, "phone") != _raw_column(second, "phone")


def test_blind_index_finds_the_user_by_phone_in_any_notation():
    user = UserFactory(phone=PHONE)
    UserFactory(phone="+4915199999999")

    assert list(users_with_phone(phone=PHONE)) == [user]
    assert list(users_with_phone(phone="0049 151 1234-5678")) == [user]
    assert list(users_with_phone(phone="+49 (151) 12345678")) == [user]
    assert list(users_with_phone(phone="+4915100000000")) == []
    assert list(users_with_phone(phone="not a phone")) == []


def test_blind_index_column_is_an_hmac_not_the_number():
    user = UserFactory(phone=PHONE)

    index = _raw_column(user, "phone_index")
    assert len(index) == 64
    assert PHONE not in index
    assert index == blind_index(value=PHONE, purpose="phone")


def test_blind_index_follows_the_phone_on_partial_saves():
    user = UserFactory(phone=PHONE)

    user.phone = "+14155550100"
    user.save(update_fields=["phone"])
    assert list(users_with_phone(phone="+14155550100")) == [user]
    assert list(users_with_phone(phone=PHONE)) == []

    user.phone = ""
    user.save(update_fields=["phone"])
    assert _raw_column(user, "phone_index") == ""
    assert list(users_with_phone(phone="+14155550100")) == []


def test_encrypted_column_cannot_be_compared_in_sql():
    with pytest.raises(FieldError, match="blind index"):
        list(User.objects.filter(phone=PHONE))
    assert User.objects.filter(phone__isnull=False).count() == 0


def test_blind_index_key_separates_indexes(settings):
    settings.BLIND_INDEX_KEY = "a" * 40
    first = blind_index(value=PHONE, purpose="phone")
    settings.BLIND_INDEX_KEY = "b" * 40
    assert blind_index(value=PHONE, purpose="phone") != first
    assert blind_index(value=PHONE, purpose="other") != blind_index(value=PHONE, purpose="phone")


def test_value_under_a_removed_key_does_not_decrypt(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    user = UserFactory(phone=PHONE)

    settings.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(DecryptionFailed):
        User.objects.get(pk=user.pk)


def test_rotate_encryption_keys_reencrypts_with_the_current_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    users = [UserFactory(phone=f"+49151000000{i}") for i in range(5)]
    UserFactory(phone="")  # empty values are left alone
    before = {u.pk: _raw_column(u, "phone") for u in users}

    # The new key goes first; values under the old one still read.
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert User.objects.get(pk=users[0].pk).phone == "+491510000000"

    call_command("rotate_encryption_keys", "--batch-size", "2")

    for user in users:
        raw = _raw_column(user, "phone")
        assert raw != before[user.pk]
        assert Fernet(new.encode()).decrypt(raw.encode()).decode() == user.phone
    # The old key can go: everything reads with the new one alone, lookups still work.
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert sorted(User.objects.exclude(phone_index="").values_list("phone", flat=True)) == sorted(
        u.phone for u in users
    )
    assert list(users_with_phone(phone="+491510000003")) == [users[3]]


def test_rotate_encryption_keys_is_idempotent(settings, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    user = UserFactory(phone=PHONE)
    settings.FIELD_ENCRYPTION_KEYS = [new, old]

    call_command("rotate_encryption_keys")
    assert "Re-encrypted 1 value(s); 0 already" in capsys.readouterr().out
    after_first = _raw_column(user, "phone")

    call_command("rotate_encryption_keys")
    assert "Re-encrypted 0 value(s); 1 already" in capsys.readouterr().out
    assert _raw_column(user, "phone") == after_first


def test_rotate_encryption_keys_reports_values_no_key_can_read(settings):
    lost = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [lost]
    user = UserFactory(phone=PHONE)
    before = _raw_column(user, "phone")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_keys")
    assert _raw_column(user, "phone") == before


def test_malformed_key_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured):
        UserFactory(phone=PHONE)


def _production_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        DJANGO_SECRET_KEY="x" * 60,
        DJANGO_ALLOWED_HOSTS="api.example.com",
        DJANGO_DEBUG="false",
        KEEL_VAR_DIR=extra.pop("KEEL_VAR_DIR"),
    )
    env.update(extra)
    return env


def _import_production(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", "import config.settings.production"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_field_encryption_keys(tmp_path):
    result = _import_production(_production_env(KEEL_VAR_DIR=str(tmp_path), BLIND_INDEX_KEY="k" * 40))

    assert result.returncode == 78
    assert "FIELD_ENCRYPTION_KEYS" in result.stderr


def test_production_refuses_a_malformed_field_encryption_key(tmp_path):
    result = _import_production(
        _production_env(
            KEEL_VAR_DIR=str(tmp_path), FIELD_ENCRYPTION_KEYS="too-short", BLIND_INDEX_KEY="k" * 40
        )
    )

    assert result.returncode == 78
    assert "not a Fernet key" in result.stderr


def test_production_refuses_to_start_without_blind_index_key(tmp_path):
    result = _import_production(
        _production_env(KEEL_VAR_DIR=str(tmp_path), FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    )

    assert result.returncode == 78
    assert "BLIND_INDEX_KEY" in result.stderr


def test_production_starts_with_both_keys(tmp_path):
    result = _import_production(
        _production_env(
            KEEL_VAR_DIR=str(tmp_path),
            FIELD_ENCRYPTION_KEYS=f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
            BLIND_INDEX_KEY="k" * 40,
        )
    )

    assert result.returncode == 0, result.stderr
