"""Who may read and write a document, as principal strings.

A caller is a set of principals: ``public`` (everyone, signed in or not),
``authenticated``, ``user:<id>`` and ``role:<group name>``; staff with the
``content.bypass_acl`` permission also carry :data:`BYPASS`. A document
stores the principals that may read it and those that may write it, derived
from its ACL, its owner and its collection; a caller may read a document when
the two sets overlap. The same rule is the SQL filter of every read
(``read_principals && ARRAY[...]``) and the Python check of
:func:`document_readable_by` that sync and realtime apply to change rows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apps.core.exceptions import ValidationFailed

PUBLIC = "public"
AUTHENTICATED = "authenticated"
BYPASS = "*"
USER_PREFIX = "user:"
ROLE_PREFIX = "role:"

ACL_KEYS = ("public", "authenticated", "users", "roles")
MAX_ACL_USERS = 200
MAX_ACL_ROLES = 50
ROLE_NAME_MAX = 150  # django.contrib.auth Group.name
_ROLE_NAME = re.compile(r"^[^\x00-\x1f]{1,150}$")


def user_principal(user_id: Any) -> str:
    return f"{USER_PREFIX}{user_id}"


def role_principal(name: str) -> str:
    return f"{ROLE_PREFIX}{name}"


def user_has_bypass(*, user: Any) -> bool:
    """Staff with ``content.bypass_acl`` (superusers have every permission)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return False
    return bool(user.has_perm("content.bypass_acl"))


def user_role_names(*, user: Any) -> list[str]:
    """The caller's roles: the names of its Django groups (one query)."""
    if user is None or not user.is_authenticated:
        return []
    return sorted(user.groups.values_list("name", flat=True))


def principals_for_user(*, user: Any) -> list[str]:
    """Every principal the user acts as; includes :data:`BYPASS` for ACL-bypassing staff.

    Anonymous callers are only ``public``. Costs one query (group names), two
    for staff (their permissions).
    """
    if user is None or not user.is_authenticated:
        return [PUBLIC]
    principals = [PUBLIC, AUTHENTICATED, user_principal(user.pk)]
    principals.extend(role_principal(name) for name in user_role_names(user=user))
    if user_has_bypass(user=user):
        principals.append(BYPASS)
    return principals


def principals_for_create_rule(*, user: Any, rule: str) -> list[str]:
    """What a check of a collection's ``create_permission`` needs of the caller's principals.

    The roles (one query) only when the rule names a role; otherwise the
    same principals as :func:`principals_for_user` minus the roles, which no
    other rule looks at.
    """
    if rule.startswith(ROLE_PREFIX):
        return principals_for_user(user=user)
    if user is None or not user.is_authenticated:
        return [PUBLIC]
    principals = [PUBLIC, AUTHENTICATED, user_principal(user.pk)]
    if user_has_bypass(user=user):
        principals.append(BYPASS)
    return principals


def principals_for_reading(*, user: Any) -> Sequence[str]:
    """The principals for read queries, with the roles resolved inside those queries.

    Same access as :func:`principals_for_user` for anything that filters
    documents through ``documents_readable`` (the SQL looks the caller's
    groups up itself), without a query of its own for non-staff users. Not
    for Python checks of roles (create permissions, writes): use
    :func:`principals_for_user` there.
    """
    from apps.content.models.documents import PrincipalsWithRoles

    if user is None or not user.is_authenticated:
        return [PUBLIC]
    principals = [PUBLIC, AUTHENTICATED, user_principal(user.pk)]
    if user_has_bypass(user=user):
        return [*principals, BYPASS]
    return PrincipalsWithRoles(principals, roles_of=user.pk)


def has_bypass(principals: Iterable[str]) -> bool:
    return BYPASS in principals


def document_readable_by(*, principals: Iterable[str], read_principals: Iterable[str]) -> bool:
    """Whether a caller with ``principals`` may read a document (or a change of it)."""
    mine = set(principals)
    if BYPASS in mine:
        return True
    return not mine.isdisjoint(read_principals)


def document_writable_by(*, principals: Iterable[str], write_principals: Iterable[str]) -> bool:
    mine = set(principals)
    if BYPASS in mine:
        return True
    return not mine.isdisjoint(write_principals)


def acl_normalize(acl: Any, *, field: str = "acl") -> dict[str, Any]:
    """A validated ACL in canonical form, or ``400 validation_error`` naming what is wrong.

    ``{"public": "read"|null, "authenticated": "read"|null,
    "users": {"<user id>": "read"|"write"}, "roles": {"<role>": "read"|"write"}}``;
    missing keys mean no access.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(acl, Mapping):
        raise ValidationFailed(errors={field: ["Must be an object."]})
    unknown = sorted(set(acl) - set(ACL_KEYS))
    if unknown:
        errors[field] = [f"Unknown key(s): {', '.join(map(str, unknown))}."]
    out: dict[str, Any] = {"public": None, "authenticated": None, "users": {}, "roles": {}}
    for key in ("public", "authenticated"):
        value = acl.get(key)
        if value not in (None, "read"):
            errors[f"{field}.{key}"] = ['Must be "read" or null.']
        else:
            out[key] = value
    users = acl.get("users") or {}
    if not isinstance(users, Mapping):
        errors[f"{field}.users"] = ["Must be an object of user id to access."]
    elif len(users) > MAX_ACL_USERS:
        errors[f"{field}.users"] = [f"At most {MAX_ACL_USERS} users."]
    else:
        for user_id, access in users.items():
            try:
                canonical = str(uuid.UUID(str(user_id)))
            except ValueError:
                errors[f"{field}.users"] = [f"{str(user_id)[:64]!r} is not a user id."]
                continue
            if access not in ("read", "write"):
                errors[f"{field}.users.{canonical}"] = ['Must be "read" or "write".']
                continue
            out["users"][canonical] = access
    roles = acl.get("roles") or {}
    if not isinstance(roles, Mapping):
        errors[f"{field}.roles"] = ["Must be an object of role name to access."]
    elif len(roles) > MAX_ACL_ROLES:
        errors[f"{field}.roles"] = [f"At most {MAX_ACL_ROLES} roles."]
    else:
        for name, access in roles.items():
            if not isinstance(name, str) or not _ROLE_NAME.match(name):
                errors[f"{field}.roles"] = ["Role names are 1 to 150 printable characters."]
                continue
            if access not in ("read", "write"):
                errors[f"{field}.roles.{name}"] = ['Must be "read" or "write".']
                continue
            out["roles"][name] = access
    if errors:
        raise ValidationFailed(errors=errors)
    return out


def acl_principals(
    *, acl: Mapping[str, Any], owner_id: Any, public_read: bool
) -> tuple[list[str], list[str]]:
    """``(read_principals, write_principals)`` for a normalised ACL.

    The owner always reads and writes; writers also read; a collection with
    ``public_read`` makes every document readable by ``public``.
    """
    read: set[str] = set()
    write: set[str] = set()
    if owner_id is not None:
        read.add(user_principal(owner_id))
        write.add(user_principal(owner_id))
    if public_read or acl.get("public") == "read":
        read.add(PUBLIC)
    if acl.get("authenticated") == "read":
        read.add(AUTHENTICATED)
    for user_id, access in (acl.get("users") or {}).items():
        read.add(user_principal(user_id))
        if access == "write":
            write.add(user_principal(user_id))
    for name, access in (acl.get("roles") or {}).items():
        read.add(role_principal(name))
        if access == "write":
            write.add(role_principal(name))
    return sorted(read), sorted(write)
