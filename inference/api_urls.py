"""API routes of the AI analysis; included by telediag/api_urls.py: path("", include("inference.api_urls"))."""

from django.urls import path

from inference import api

urlpatterns = [
    path("cases/<int:pk>/analysis/", api.CaseAnalysisView.as_view(), name="api-case-analysis"),
    path("cases/<int:pk>/analysis/rerun/", api.CaseRerunView.as_view(), name="api-case-analysis-rerun"),
    path("analysis/jobs/", api.AnalysisJobList.as_view(), name="api-analysis-jobs"),
    path("analysis/jobs/<int:pk>/retry/", api.AnalysisJobRetry.as_view(), name="api-analysis-job-retry"),
]
