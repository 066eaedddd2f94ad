from django.urls import URLPattern

from apps.accounts.api import views_me
from apps.core.api.paths import api_path

urlpatterns: list[URLPattern] = [
    *api_path("me", views_me.MeView.as_view(), name="accounts-me"),
    *api_path("me/export", views_me.MeExportView.as_view(), name="accounts-me-export"),
    *api_path(
        "me/export/<uuid:export_id>", views_me.MeExportDetailView.as_view(), name="accounts-me-export-detail"
    ),
    *api_path(
        "me/export/<uuid:export_id>/download",
        views_me.MeExportDownloadView.as_view(),
        name="accounts-me-export-download",
    ),
]
