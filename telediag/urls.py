from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("telediag.api_urls")),
    path("accounts/", include("accounts.urls")),
    path("", include("ops.urls")),
    path("", include("inference.urls")),
    path("", include("cases.urls")),
]

# Unknown /api/ addresses answer with the API's error body; portal pages keep their templates.
handler404 = "core.api_errors.page_not_found"
handler500 = "core.api_errors.server_error"
