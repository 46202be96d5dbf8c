"""Clinical API routes, included under /api/ by telediag.api_urls. URL names start with "api-"."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from cases.api import views

router = SimpleRouter()
router.register("patients", views.PatientViewSet, basename="api-patient")
router.register("cases", views.CaseViewSet, basename="api-case")
router.register("audit-events", views.AuditEventViewSet, basename="api-audit-event")

urlpatterns = [
    path("smears/<int:pk>/image/", views.SmearImageView.as_view(), name="api-smear-image"),
    path("review-queue/", views.ReviewQueueView.as_view(), name="api-review-queue"),
    *router.urls,
]
