"""A URL configuration that breaks the /api/v1 rules on purpose (see test_api_urls.py)."""

from __future__ import annotations

from django.urls import path

from apps.core.api.paths import api_path
from tests.core import views

urlpatterns = [
    *api_path("api/v1/good/<uuid:pk>", views.UserDetailView.as_view()),
    path("api/v1/unguarded", views.UnguardedAPIView.as_view()),
    path("api/v1/unguarded/", views.UnguardedAPIView.as_view()),
    path("api/v1/slash-only/", views.RenderView.as_view()),
    path("not-api/plain", views.plain_ok),
]
