from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import health
from apps.core import views as core_views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema", SpectacularAPIView.as_view()),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema")),
    path("admin/", admin.site.urls),
    path(".well-known/", include("apps.accounts.api.urls_wellknown")),
    # Documents are the busiest routes: resolved first (the two sets share no path).
    path("api/v1/", include("apps.content.api.urls")),
    path("api/v1/", include("apps.accounts.api.urls")),
    path("api/v1/", include("apps.payments.api.urls")),
]

# Keep this last: any other path under /api/ is a problem+json 404, also with
# DEBUG on (``make run``), where Django would answer with its HTML debug page.
urlpatterns += [re_path(r"^api/", csrf_exempt(core_views.page_not_found))]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
