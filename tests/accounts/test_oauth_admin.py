"""OAuth clients are registered in the admin, with Keel's redirect URI rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from oauth2_provider import models as dot_models

from apps.accounts.models import AuditEvent, OAuthClient, SocialIdentity
from tests.accounts.oauth_helpers import make_client
from tests.factories import UserFactory


@pytest.fixture
def staff_browser(client: Any, db: None) -> Any:
    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    client.staff = staff
    return client


def add_form(**overrides: Any) -> dict[str, str]:
    data = {
        "name": "Example iOS",
        "client_id": "example-ios",
        "client_type": "public",
        "redirect_uris": "com.example.app:/oauth/callback\nhttps://app.example.com/cb",
        "client_secret": "",
        "allowed_origins": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_add_page_and_changelist_render(staff_browser):
    make_client(name="Listed App")

    assert staff_browser.get("/admin/accounts/oauthclient/add/").status_code == 200
    changelist = staff_browser.get("/admin/accounts/oauthclient/")
    assert changelist.status_code == 200
    assert "Listed App" in changelist.content.decode()


@pytest.mark.django_db
def test_public_client_with_a_custom_scheme_is_registered_through_the_admin(staff_browser):
    response = staff_browser.post("/admin/accounts/oauthclient/add/", add_form())

    assert response.status_code == 302, response.content.decode()[:2000]
    client = OAuthClient.objects.get(client_id="example-ios")
    assert client.authorization_grant_type == OAuthClient.GRANT_AUTHORIZATION_CODE
    assert client.client_type == OAuthClient.CLIENT_PUBLIC
    assert client.redirect_uri_allowed("com.example.app:/oauth/callback")
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.STAFF_ACTION, actor=staff_browser.staff, data__action="oauth_client_added"
    ).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "redirect_uris",
    [
        "http://app.example.com/cb",  # plain http off the loopback interface
        "javascript:/alert(1)",  # not a reverse-domain private-use scheme
        "myapp:/callback",  # neither
        "https://app.example.com/cb#fragment",
    ],
)
def test_unsafe_redirect_uris_are_refused(staff_browser, redirect_uris):
    response = staff_browser.post("/admin/accounts/oauthclient/add/", add_form(redirect_uris=redirect_uris))

    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    assert not OAuthClient.objects.exists()


@pytest.mark.django_db
def test_loopback_redirect_is_allowed_for_desktop_and_dev(db):
    client = make_client(redirect_uris="http://127.0.0.1/callback")

    # RFC 8252: any port on the loopback interface.
    assert client.redirect_uri_allowed("http://127.0.0.1:53123/callback")


@pytest.mark.django_db
def test_only_the_authorization_code_grant_is_offered(db):
    client = OAuthClient(
        name="Legacy",
        client_type=OAuthClient.CLIENT_PUBLIC,
        authorization_grant_type=OAuthClient.GRANT_PASSWORD,
        redirect_uris="https://app.example.com/cb",
    )

    with pytest.raises(ValidationError) as raised:
        client.full_clean()

    assert "authorization_grant_type" in raised.value.message_dict


@pytest.mark.django_db
def test_deleting_a_client_is_audited(staff_browser):
    client = make_client()

    response = staff_browser.post(f"/admin/accounts/oauthclient/{client.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not OAuthClient.objects.exists()
    assert AuditEvent.objects.filter(
        data__action="oauth_client_deleted", data__client_id=client.client_id
    ).exists()


def test_unused_oauth_toolkit_tables_are_not_in_the_admin():
    for model in (dot_models.AccessToken, dot_models.RefreshToken, dot_models.IDToken, dot_models.Grant):
        assert not admin.site.is_registered(model)
    assert admin.site.is_registered(OAuthClient)


@pytest.mark.django_db
def test_social_identities_are_listed_and_can_be_unlinked(staff_browser):
    user = UserFactory(email="ada@example.com")
    identity = SocialIdentity.objects.create(user=user, provider="google", subject="sub-1")

    changelist = staff_browser.get("/admin/accounts/socialidentity/")
    assert changelist.status_code == 200
    assert "sub-1" in changelist.content.decode()

    response = staff_browser.post(f"/admin/accounts/socialidentity/{identity.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not SocialIdentity.objects.exists()
    assert AuditEvent.objects.filter(target=user, data__action="social_identity_unlinked").exists()
