from django.urls import path

from inference import views

urlpatterns = [
    path("cases/<int:pk>/analysis/", views.case_analysis_page, name="inference-case-analysis"),
    path("cases/<int:pk>/analysis/panel/", views.case_analysis_panel, name="inference-case-analysis-panel"),
    path("cases/<int:pk>/analysis/rerun/", views.case_rerun, name="inference-case-rerun"),
    path("analysis/jobs/<int:pk>/retry/", views.job_retry, name="inference-job-retry"),
    path("analysis/failed/", views.failed_jobs, name="inference-failed-jobs"),
    path("analysis/predictions/<int:pk>/heatmap.png", views.heatmap, name="inference-heatmap"),
]
