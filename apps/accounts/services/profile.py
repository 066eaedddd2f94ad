"""The user's own profile: ``GET/PATCH me``.

Decisions a mobile developer relies on:

- ``locale`` is a BCP 47 language tag as the device reports it (``de``,
  ``de-AT``, ``pt-BR``, ``zh-Hant-TW``; ``en_US`` is accepted and stored as
  ``en-US``). Any well-formed tag is kept, because apps use it for their own
  content too; server-rendered text (emails) uses the closest language Keel
  ships (``settings.LANGUAGES``) and falls back to English.
- ``timezone`` is an IANA name known to the server's tz database
  (``Europe/Berlin``).
- ``phone`` is E.164: ``+`` and 7 to 15 digits with a country code.
  Spaces, dots, dashes and parentheses are dropped and a leading ``00`` is
  read as ``+``; it is stored encrypted and found by exact value through its
  blind index. An empty string or null removes it.
- ``avatar_file_id`` names an image file the user can read (content app);
  null or an empty string removes the avatar.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from django.db import transaction

from apps.accounts.models import User
from apps.content.selectors.files import file_describe_for_user
from apps.content.services.files import file_mark_referenced
from apps.core.exceptions import PreconditionFailed, ValidationFailed
from apps.core.http import make_etag

_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:-([A-Za-z]{4}))?(?:-([A-Za-z]{2}|[0-9]{3}))?$")
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def locale_normalize(*, value: str) -> str:
    """The canonical form of a BCP 47 tag (``pt-br`` -> ``pt-BR``); ``ValueError`` when malformed."""
    match = _LOCALE.match(value.strip().replace("_", "-"))
    if match is None:
        raise ValueError("Use a BCP 47 language tag such as 'en', 'de-AT' or 'pt-BR'.")
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_validate(*, value: str) -> str:
    """``value`` when it is an IANA time zone name this server knows; ``ValueError`` otherwise."""
    name = value.strip()
    if name not in _known_timezones():
        raise ValueError("Use an IANA time zone name such as 'Europe/Berlin' or 'America/New_York'.")
    return name


def phone_normalize(*, value: str) -> str:
    """The E.164 form of a phone number (``+4915112345678``); ``ValueError`` when it is not one."""
    compact = _PHONE_SEPARATORS.sub("", value.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.match(compact):
        raise ValueError("Use the international format with the country code, such as +4915112345678.")
    return compact


def avatar_describe(*, user: User) -> dict[str, Any] | None:
    """The file object of the user's avatar (with signed urls), or None.

    None also when the file is gone (deleted, or erased with its owner's files).
    """
    if not user.avatar_file_id:
        return None
    return file_describe_for_user(file_id=user.avatar_file_id, user=user)


def _avatar_check(*, user: User, file_id: str) -> None:
    """400 unless ``file_id`` is an image file of ``user`` that was not rejected."""
    described = file_describe_for_user(file_id=file_id, user=user)
    if described is None:
        raise ValidationFailed(errors={"avatar_file_id": ["No file with this id was found."]})
    if not str(described.get("content_type", "")).startswith("image/"):
        raise ValidationFailed(errors={"avatar_file_id": ["The avatar must be an image file."]})
    if described.get("status") == "rejected":
        raise ValidationFailed(errors={"avatar_file_id": ["This file was rejected; upload another image."]})


def mfa_enabled_for(*, user: User) -> bool:
    from apps.accounts.services.mfa import mfa_is_enabled

    return mfa_is_enabled(user=user)


def user_profile_describe(*, user: User) -> tuple[dict[str, Any], str]:
    """The ``me`` document of ``user`` and its ETag."""
    mfa_enabled = mfa_enabled_for(user=user)
    document = {
        "id": str(user.pk),
        "email": user.email,
        "email_verified": user.email_verified,
        "display_name": user.display_name,
        "avatar": avatar_describe(user=user),
        "locale": user.locale,
        "timezone": user.timezone,
        "mfa_enabled": mfa_enabled,
        "created_at": user.created_at,
        "phone": user.phone or None,
    }
    return document, user_profile_etag(user=user, mfa_enabled=mfa_enabled)


def user_profile_etag(*, user: User, mfa_enabled: bool) -> str:
    """The ETag of ``me``: changes with every write of the user row and with MFA."""
    return make_etag("me", user.pk, int(user.updated_at.timestamp() * 1_000_000), int(mfa_enabled))


def _if_match_satisfied(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return etag in [tag.strip() for tag in header.split(",") if tag.strip()]


def _checked(field: str, check: Callable[..., str], value: str) -> str:
    try:
        return check(value=value)
    except ValueError as exc:
        raise ValidationFailed(errors={field: [str(exc)]}) from exc


def user_profile_update(
    *,
    user: User,
    if_match: str | None = None,
    display_name: str | _Unset = UNSET,
    avatar_file_id: str | None | _Unset = UNSET,
    locale: str | _Unset = UNSET,
    timezone: str | _Unset = UNSET,
    phone: str | None | _Unset = UNSET,
) -> User:
    """Change the profile fields that were given (already validated for format).

    Locks the user row, so a stale ``If-Match`` is detected even when two
    updates race; on ``412`` nothing is written.
    """
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if if_match:
            current = user_profile_etag(user=locked, mfa_enabled=mfa_enabled_for(user=locked))
            if not _if_match_satisfied(if_match, current):
                raise PreconditionFailed()
        changed: list[str] = []
        if not isinstance(display_name, _Unset):
            locked.display_name = display_name.strip()
            changed.append("display_name")
        if not isinstance(avatar_file_id, _Unset):
            file_id = (avatar_file_id or "").strip()
            if file_id and file_id != locked.avatar_file_id:
                _avatar_check(user=locked, file_id=file_id)
                # A referenced file is kept by the content app's cleanup job.
                file_mark_referenced(file_ids=[file_id])
            locked.avatar_file_id = file_id
            changed.append("avatar_file_id")
        if not isinstance(locale, _Unset):
            locked.locale = _checked("locale", locale_normalize, locale)
            changed.append("locale")
        if not isinstance(timezone, _Unset):
            locked.timezone = _checked("timezone", timezone_validate, timezone)
            changed.append("timezone")
        if not isinstance(phone, _Unset):
            locked.phone = _checked("phone", phone_normalize, phone) if phone else ""
            changed.append("phone")
        if changed:
            # ``phone_index`` follows ``phone`` (BlindIndexedModel), ``updated_at`` is auto.
            locked.save(update_fields=[*changed, "updated_at"])
    return locked
