"""Access token lifetime on a socket: token_expiring, re-auth keeping subscriptions, close at expiry."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create
from tests.factories import CollectionFactory, UserFactory
from tests.realtime.conftest import connected_as, expect_close, receive, run, send

pytestmark = pytest.mark.django_db


def short_lived(user: Any, seconds: float) -> str:
    """A real access token of ``user`` whose expiry is ``seconds`` away (re-signed)."""
    token = AccessToken(tokens_issue_for_user(user=user).access)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


def test_token_expiring_then_a_fresh_auth_keeps_the_subscriptions(user, settings):
    settings.REALTIME_TOKEN_EXPIRING_LEAD_SECONDS = 2
    CollectionFactory(name="tasks")
    tasks = collection_get(name="tasks")
    first = short_lived(user, 4)
    first_expiry = AccessToken(first)["exp"]
    fresh = tokens_issue_for_user(user=user).access

    async def scenario() -> None:
        socket = await connected_as(first)
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "collection:tasks"})
        assert (await receive(socket))["type"] == "subscribed"
        expiring = await receive(socket, timeout=5)
        assert expiring["type"] == "token_expiring" and expiring["expires_at"]
        await send(socket, {"type": "auth", "token": fresh})
        assert (await receive(socket))["type"] == "ready"
        # Past the first token's expiry: still open, still subscribed.
        assert await socket.receive_nothing(timeout=max(0.1, first_expiry - time.time()) + 0.5)
        await sync_to_async(document_create)(collection=tasks, actor=user, data={"title": "after re-auth"})
        event = await receive(socket)
        assert event["sub"] == "s1" and event["document"]["data"]["title"] == "after re-auth"
        await socket.disconnect()

    run(scenario)


def test_a_socket_whose_token_expires_without_re_auth_is_closed_4401(user, settings):
    settings.REALTIME_TOKEN_EXPIRING_LEAD_SECONDS = 0.5
    token = short_lived(user, 2)

    async def scenario() -> None:
        socket = await connected_as(token)
        assert (await receive(socket, timeout=3))["type"] == "token_expiring"
        assert await receive(socket, timeout=2) == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, 4401)

    run(scenario)


def test_re_auth_checks_subscriptions_again_with_the_users_current_roles(user):
    CollectionFactory(name="notes")
    notes = collection_get(name="notes")
    editors = Group.objects.create(name="editors")
    user.groups.add(editors)
    document = document_create(
        collection=notes, actor=UserFactory(), data={"title": "team"}, acl={"roles": {"editors": "read"}}
    )
    before = tokens_issue_for_user(user=user).access

    async def scenario() -> None:
        socket = await connected_as(before)
        await send(socket, {"type": "subscribe", "id": "doc", "topic": f"document:notes/{document.pk}"})
        assert (await receive(socket))["type"] == "subscribed"
        await send(socket, {"type": "subscribe", "id": "me", "topic": "user:me"})
        assert (await receive(socket))["type"] == "subscribed"

        def demote() -> str:
            user.groups.remove(editors)
            return tokens_issue_for_user(user=user).access

        after = await sync_to_async(demote)()
        await send(socket, {"type": "auth", "token": after})
        assert (await receive(socket))["type"] == "ready"
        assert await receive(socket) == {"type": "error", "code": "forbidden", "id": "doc"}
        # The other subscription is untouched.
        await send(socket, {"type": "subscribe", "id": "me", "topic": "user:me"})
        assert (await receive(socket))["code"] == "invalid_message"
        await socket.disconnect()

    run(scenario)
