"""API routes of notifications; included by telediag/api_urls.py."""

from django.urls import path

from notifications import api

urlpatterns = [
    path("notifications/", api.NotificationList.as_view(), name="api-notifications"),
    path("notifications/read/", api.NotificationMarkRead.as_view(), name="api-notifications-read"),
]
