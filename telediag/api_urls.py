"""The REST API, mounted at /api/ (its schema at /api/schema/, interactive docs at /api/docs/).

- auth/token/     POST username + password → token (then "Authorization: Token <token>")
- me/             GET who am I
- users/          lab admins: the users of their organisation (list, create, retrieve, PATCH role/is_active)
- patients/, cases/, cases/{id}/sign/, cases/{id}/amend/, review-queue/, audit-events/: see cases.api
- cases/{id}/analysis/, cases/{id}/analysis/rerun/, analysis/jobs/: see inference.api
- cases/{id}/report.pdf, cases/{id}/fhir/: the signed report, see reports.api
- notifications/, notifications/read/: see notifications.api
- monitoring/performance/, monitoring/alerts/: see monitoring.api
"""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from accounts import api as accounts_api

router = SimpleRouter()
router.register("users", accounts_api.UserViewSet, basename="api-user")

urlpatterns = [
    path("auth/token/", accounts_api.TokenView.as_view(), name="api-token"),
    path("me/", accounts_api.MeView.as_view(), name="api-me"),
    *router.urls,
    path("", include("reports.api_urls")),  # before the cases router: cases/{id}/... of its own
    path("", include("notifications.api_urls")),
    path("", include("cases.api.urls")),
    path("", include("inference.api_urls")),
    path("", include("monitoring.api_urls")),
]
