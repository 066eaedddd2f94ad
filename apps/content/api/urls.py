from django.urls import URLPattern

from apps.content.api import views_documents, views_files, views_sync
from apps.core.api.paths import api_path

urlpatterns: list[URLPattern] = []

# Documents first: the busiest routes are tried first.
urlpatterns += [
    *api_path("collections", views_documents.CollectionListView.as_view(), name="content-collections"),
    *api_path(
        "collections/<str:name>/documents",
        views_documents.DocumentListView.as_view(),
        name="content-documents",
    ),
    *api_path(
        "collections/<str:name>/documents/<str:document_id>",
        views_documents.DocumentDetailView.as_view(),
        name="content-document",
    ),
]

urlpatterns += [
    *api_path("files", views_files.FileCollectionView.as_view(), name="content-files"),
    *api_path("files/<uuid:file_id>", views_files.FileDetailView.as_view(), name="content-file"),
    *api_path(
        "files/<uuid:file_id>/complete", views_files.FileCompleteView.as_view(), name="content-file-complete"
    ),
    *api_path(
        "files/<uuid:file_id>/upload", views_files.FileUploadView.as_view(), name="content-file-upload"
    ),
    *api_path(
        "files/<uuid:file_id>/download", views_files.FileDownloadView.as_view(), name="content-file-download"
    ),
]

urlpatterns += [
    *api_path("sync/changes", views_sync.SyncChangesView.as_view(), name="content-sync-changes"),
    *api_path("sync/push", views_sync.SyncPushView.as_view(), name="content-sync-push"),
]
