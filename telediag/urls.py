from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Only for signed-in users; the split view serves its start-up script as a file (strict CSP).
    path("api/docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include("telediag.api_urls")),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("security.urls")),
    path("", include("ops.urls")),
    path("", include("inference.urls")),
    path("", include("reports.urls")),
    path("", include("notifications.urls")),
    path("", include("monitoring.urls")),
    path("", include("workspace.urls")),
    path("", include("cases.urls")),
]

# Unknown /api/ addresses answer with the API's error body; portal pages keep their templates.
handler404 = "core.api_errors.page_not_found"
handler500 = "core.api_errors.server_error"
