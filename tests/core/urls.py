"""The project's URLs plus views that exist only for the core convention tests."""

from __future__ import annotations

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from apps.core.api.paths import api_path
from config import urls as project_urls
from tests.core import views

urlpatterns = [
    *api_path("api/v1/test/users", views.UserCollectionView.as_view()),
    *api_path("api/v1/test/users/<uuid:pk>", views.UserDetailView.as_view()),
    *api_path("api/v1/test/anonymous-users", views.AnonymousCreateView.as_view()),
    *api_path("api/v1/test/validate", views.ValidateView.as_view()),
    *api_path("api/v1/test/boom", views.BoomView.as_view()),
    *api_path("api/v1/test/unrenderable", views.UnrenderableView.as_view()),
    *api_path("api/v1/test/base-exception", views.BaseExceptionView.as_view()),
    *api_path("api/v1/test/no-content", views.NoContentView.as_view()),
    *api_path("api/v1/test/raw-upload", views.RawUploadView.as_view()),
    *api_path("api/v1/test/throttled-work", views.ThrottledWorkView.as_view()),
    *api_path("api/v1/test/peeked-body", views.PeekedBodyView.as_view()),
    *api_path("api/v1/test/swallowed-db-error", views.SwallowedDatabaseErrorView.as_view()),
    *api_path("api/v1/test/precondition", views.PreconditionView.as_view()),
    *api_path("api/v1/test/throttled", views.ScopedThrottleView.as_view()),
    *api_path("api/v1/test/ip-throttled", views.IPThrottleView.as_view()),
    *api_path("api/v1/test/log", views.LogView.as_view()),
    *api_path("api/v1/test/render", views.RenderView.as_view()),
    *api_path("api/v1/test/echo", views.EchoView.as_view()),
    *api_path("api/v1/test/html-first", views.HTMLFirstView.as_view()),
    path("test-plain/keel-error", views.plain_keel_error),
    path("test-plain/boom", views.plain_boom),
    path("test-plain/ok", views.plain_ok),
    path("test-plain/read-body", csrf_exempt(views.plain_read_body)),
    *project_urls.urlpatterns,
]

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500
