"""API routes of model monitoring; included by telediag/api_urls.py: path("", include("monitoring.api_urls"))."""

from django.urls import path

from monitoring import api

urlpatterns = [
    path("monitoring/performance/", api.PerformanceView.as_view(), name="api-monitoring-performance"),
    path("monitoring/alerts/", api.AlertList.as_view(), name="api-monitoring-alerts"),
    path(
        "monitoring/alerts/<int:pk>/acknowledge/",
        api.AlertAcknowledge.as_view(),
        name="api-monitoring-alert-acknowledge",
    ),
]
