"""Model fields for personal data: encrypted at rest, with blind indexes for lookups.

``EncryptedTextField`` encrypts on the way to the database and decrypts on
the way back (see ``apps.accounts.services.encryption``); the column only ever
holds Fernet tokens. Because every encryption is randomised, the database
cannot compare such a column with a value: the only lookup it allows is
``isnull``. A field that must be found by exact value gets a
``BlindIndexField`` beside it, which is recomputed from its source on every
save; look it up through the index (``user_find_by_phone`` does).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text encrypted with the current field key; decrypts with any configured key.

    The empty string is stored as is (it says nothing), so ``blank=True`` with
    ``default=""`` behaves like an ordinary optional text field.
    """

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value  # type: ignore[no-any-return]
        from apps.accounts.services.encryption import value_decrypt

        return value_decrypt(token=str(value))

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        from apps.accounts.services.encryption import value_encrypt

        return value_encrypt(plaintext=str(value))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            raise FieldError(
                f"'{self.name}' is encrypted: it cannot be compared in the database "
                f"(lookup '{lookup_name}'). Query its blind index instead."
            )
        return super().get_lookup(lookup_name)


class BlindIndexField(models.CharField):  # type: ignore[type-arg]
    """HMAC-SHA256 of the value of ``source`` (already normalised), for exact-value lookups."""

    description = "Blind index (HMAC-SHA256) of an encrypted field"

    def __init__(self, *args: Any, source: str, purpose: str, **kwargs: Any) -> None:
        self.source = source
        self.purpose = purpose
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        kwargs.setdefault("db_index", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        kwargs["purpose"] = self.purpose
        return name, path, args, kwargs

    def index_for(self, value: str | None) -> str:
        if not value:
            return ""
        from apps.accounts.services.encryption import blind_index

        return blind_index(value=value, purpose=self.purpose)

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        index = self.index_for(getattr(model_instance, self.source))
        setattr(model_instance, self.attname, index)
        return index


class BlindIndexedModel(models.Model):
    """Keeps blind indexes in step with their sources on ``save(update_fields=...)`` too."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            fields = set(update_fields)
            for field in self._meta.concrete_fields:
                if isinstance(field, BlindIndexField) and field.source in fields:
                    fields.add(field.name)
            kwargs["update_fields"] = fields
        super().save(*args, **kwargs)


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
