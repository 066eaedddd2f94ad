"""OpenID Connect metadata at the issuer's root (``/.well-known/...``)."""

from django.urls import URLPattern, path

from apps.accounts.api import views_federation

urlpatterns: list[URLPattern] = [
    path("openid-configuration", views_federation.openid_configuration, name="oidc-configuration"),
    path("jwks.json", views_federation.jwks, name="oidc-jwks"),
]
