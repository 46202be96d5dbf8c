"""API routes of reports; included by telediag/api_urls.py: path("", include("reports.api_urls"))."""

from django.urls import path

from reports import api

urlpatterns = [
    path("cases/<int:pk>/report.pdf", api.CaseReportPdfView.as_view(), name="api-case-report-pdf"),
    path("cases/<int:pk>/fhir/", api.CaseFhirView.as_view(), name="api-case-fhir"),
]
