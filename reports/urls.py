from django.urls import path

from reports import views

urlpatterns = [
    path("cases/<int:pk>/report.pdf", views.report_pdf, name="case-report-pdf"),
]
