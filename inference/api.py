"""REST API of the AI analysis (DRF). Wired under /api/ by inference.api_urls.

- GET  /api/cases/<pk>/analysis/           the analysis of a case (the portal's panel polls it too)
- POST /api/cases/<pk>/analysis/rerun/     {"model_version": id} — pathologists of the laboratory
- GET  /api/analysis/jobs/?status=failed   jobs of the user's laboratory (pathologists, lab admins)
- POST /api/analysis/jobs/<id>/retry/      queue a failed job again — pathologists, lab admins

Access: the case selectors of cases.access (invisible → 404); a visible object but a role that may
not act → 403. Errors use the project's {"error": {...}} body (core.api_errors).
"""

from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import access
from cases.api.keyset import JobKeysetPagination
from core import permissions
from core.api_errors import error_responses
from core.permissions import require_role
from inference import selectors, services
from inference.models import AnalysisJob
from inference.status import case_analysis_data, job_status_text
from training.models import ModelVersion


class AnalysisJobSerializer(serializers.ModelSerializer):
    case = serializers.IntegerField(source="smear.case_id", read_only=True)
    case_reference = serializers.CharField(source="smear.case.reference", read_only=True)
    model_version_name = serializers.CharField(source="model_version.name", read_only=True)
    status_text = serializers.SerializerMethodField()

    class Meta:
        model = AnalysisJob
        fields = [
            "id",
            "case",
            "case_reference",
            "smear",
            "model_version",
            "model_version_name",
            "status",
            "status_text",
            "attempts",
            "reason",
            "enqueued_at",
            "published_at",
            "started_at",
            "finished_at",
            "last_enqueue_error",
        ]
        read_only_fields = fields

    def get_status_text(self, job) -> str:
        from django.utils import timezone

        return job_status_text(job, timezone.now())


class RerunSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())


ANALYSIS_SCHEMA = inline_serializer(
    "CaseAnalysis",
    fields={
        "state": serializers.CharField(),
        "message": serializers.CharField(),
        "pending": serializers.BooleanField(),
        "result": serializers.DictField(allow_null=True),
        "smears": serializers.ListField(child=serializers.DictField()),
    },
)


def _case_for(user, pk):
    require_role(permissions.works_with_cases(user), "Your role does not give access to cases.")
    return access.get_case_for(user, pk)


class CaseAnalysisView(APIView):
    @extend_schema(responses={200: ANALYSIS_SCHEMA, **error_responses(401, 403, 404)}, summary="AI analysis of a case")
    def get(self, request, pk):
        case = _case_for(request.user, pk)
        response = Response(case_analysis_data(case, request.user, version_id=request.query_params.get("version")))
        add_never_cache_headers(response)  # polled by the portal: always the current state
        return response


class CaseRerunView(APIView):
    @extend_schema(
        request=RerunSerializer,
        responses={202: ANALYSIS_SCHEMA, **error_responses(400, 401, 403, 404)},
        summary="Re-run the analysis with a model version",
    )
    def post(self, request, pk):
        case = _case_for(request.user, pk)
        require_role(
            permissions.is_case_pathologist(request.user, case),
            "Only pathologists of the reading laboratory re-run an analysis.",
        )
        serializer = RerunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.case_rerun(
            user=request.user, case=case, model_version=serializer.validated_data["model_version"], request=request
        )
        return Response(case_analysis_data(case, request.user), status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    get=extend_schema(responses={200: AnalysisJobSerializer(many=True), **error_responses(400, 401, 403, 404)})
)
class AnalysisJobList(generics.ListAPIView):
    serializer_class = AnalysisJobSerializer
    pagination_class = JobKeysetPagination  # newest first, ?page_size=, ?cursor= (or ?page=N)

    def get_queryset(self):
        user = self.request.user
        require_role(permissions.watches_analyses(user), "Only the reading laboratory's staff list analysis jobs.")
        jobs = selectors.laboratory_jobs(user).order_by("-enqueued_at", "-pk")
        wanted = self.request.query_params.get("status")
        if wanted in AnalysisJob.Status.values:
            jobs = jobs.filter(status=wanted)
        return jobs


class AnalysisJobRetry(APIView):
    @extend_schema(
        request=None,
        responses={202: AnalysisJobSerializer, **error_responses(400, 401, 403, 404)},
        summary="Retry a failed analysis",
    )
    def post(self, request, pk):
        job = selectors.get_job_for_retry(request.user, pk)
        job = services.job_retry(user=request.user, job=job, request=request)
        return Response(AnalysisJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
