"""Application-level encryption of personal fields, and blind indexes for lookups.

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) through a
``MultiFernet`` built from ``FIELD_ENCRYPTION_KEYS``: the first key encrypts,
every key decrypts, so a new key is introduced by putting it first and
``manage.py rotate_encryption_keys`` then re-encrypts the stored values with
it, after which the old keys can be dropped.

Encrypted values cannot be compared in SQL (every encryption is randomised),
so a field that must be found by exact value keeps a blind index beside it:
HMAC-SHA256 of the normalised value under ``BLIND_INDEX_KEY``.

Without keys (development and tests) both keys are derived from
``SECRET_KEY``; production refuses to start without them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionFailed(Exception):
    """A stored value could not be decrypted with any configured key."""

    def __init__(self) -> None:
        super().__init__("The value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS.")


def _derived_key(label: str) -> bytes:
    return hashlib.sha256(f"keel:{label}:{settings.SECRET_KEY}".encode()).digest()


def _configured_field_keys() -> tuple[str, ...]:
    keys = tuple(k.strip() for k in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if k.strip())
    if keys:
        return keys
    return (base64.urlsafe_b64encode(_derived_key("field-encryption")).decode(),)


@lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    try:
        fernets = [Fernet(key) for key in keys]
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each)."
        ) from exc
    return MultiFernet(fernets), fernets[0]


def _multi() -> MultiFernet:
    return _fernets(_configured_field_keys())[0]


def _current() -> Fernet:
    return _fernets(_configured_field_keys())[1]


def value_encrypt(*, plaintext: str) -> str:
    """The token for ``plaintext`` under the current (first) key."""
    return _multi().encrypt(plaintext.encode()).decode("ascii")


def value_decrypt(*, token: str) -> str:
    """The plaintext of a token written under any configured key."""
    try:
        return _multi().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionFailed() from exc


def value_is_current(*, token: str) -> bool:
    """True when ``token`` is already encrypted with the current key."""
    try:
        _current().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def value_reencrypt(*, token: str) -> str:
    """``token`` re-encrypted under the current key (same plaintext)."""
    try:
        return _multi().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionFailed() from exc


def _blind_index_key() -> bytes:
    configured = getattr(settings, "BLIND_INDEX_KEY", "")
    if configured:
        return str(configured).encode()
    return _derived_key("blind-index")


def blind_index(*, value: str, purpose: str) -> str:
    """HMAC-SHA256 (hex) of an already normalised ``value``.

    ``purpose`` (``"phone"``, say) separates the indexes of different fields,
    so equal values in two fields do not produce equal index entries.
    """
    message = f"{purpose}\0{value}".encode()
    return hmac.new(_blind_index_key(), message, hashlib.sha256).hexdigest()


def pseudonym_for(*, kind: str, value: str) -> str:
    """A stable, non-reversible stand-in for an identifier (used once data is erased)."""
    return blind_index(value=value, purpose=f"pseudonym:{kind}")[:24]


def encrypted_values_rotate(*, batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every stored encrypted value that is not under the current key yet.

    Walks each model with ``EncryptedTextField`` columns in primary-key order,
    ``batch_size`` rows per transaction. A row is only rewritten if its stored
    token is still the one that was read (compare-and-swap), so a concurrent
    save is never overwritten; running it again rewrites nothing. Returns
    counts: ``rotated``, ``current`` (already under the current key),
    ``unreadable`` (no configured key decrypts it; left untouched).
    """
    from django.apps import apps
    from django.db import transaction
    from django.db.models import F, TextField, Value
    from django.db.models.functions import Cast
    from django.db.models.lookups import Exact

    from apps.accounts.models.profile import encrypted_fields

    counts = {"rotated": 0, "current": 0, "unreadable": 0}
    for model in apps.get_models():
        for field in encrypted_fields(model):
            raw = Cast(F(field.attname), output_field=TextField())
            manager = model._default_manager
            last_pk = None
            while True:
                with transaction.atomic():
                    rows = manager.exclude(**{f"{field.attname}__isnull": True}).annotate(_keel_raw=raw)
                    if last_pk is not None:
                        rows = rows.filter(pk__gt=last_pk)
                    batch = list(rows.order_by("pk").values_list("pk", "_keel_raw")[:batch_size])
                    for pk, token in batch:
                        if not token:
                            continue
                        if value_is_current(token=token):
                            counts["current"] += 1
                            continue
                        try:
                            fresh = value_reencrypt(token=token)
                        except DecryptionFailed:
                            counts["unreadable"] += 1
                            continue
                        # A Value expression is written as is (no second encryption);
                        # a row saved meanwhile no longer matches and was written
                        # with the current key by that save.
                        counts["rotated"] += manager.filter(
                            Exact(raw, Value(token, output_field=TextField())), pk=pk
                        ).update(**{field.attname: Value(fresh, output_field=TextField())})
                if len(batch) < batch_size:
                    break
                last_pk = batch[-1][0]
    return counts
