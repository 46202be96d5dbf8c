from django.urls import path

from monitoring import views

urlpatterns = [
    path("monitoring/", views.home, name="monitoring-home"),
    path("monitoring/performance/", views.performance_page, name="monitoring-performance"),
    path("monitoring/alerts/", views.alert_list, name="monitoring-alerts"),
    path("monitoring/alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="monitoring-alert-acknowledge"),
]
