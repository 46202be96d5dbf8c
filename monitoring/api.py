"""REST API of model monitoring (DRF). Wired under /api/ by monitoring.api_urls.

- GET  /api/monitoring/performance/[?site=<id>]   lab admins: per referring site and model version,
  cases signed, agreement with a 95 % Wilson interval, flagged rate, drift and the confusion matrix
- GET  /api/monitoring/alerts/                     pathologists and lab admins of the laboratory
- POST /api/monitoring/alerts/<id>/acknowledge/    the same; audited; 409 when already acknowledged
"""

from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import permissions
from core.api_errors import error_responses
from monitoring import alerts, performance
from monitoring.models import MonitoringAlert


class AlertSerializer(serializers.ModelSerializer):
    site_name = serializers.CharField(source="site.name", read_only=True)
    model_version_name = serializers.CharField(source="model_version.name", read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    acknowledged_by = serializers.StringRelatedField(read_only=True)

    class Meta:
        model = MonitoringAlert
        fields = [
            "id",
            "kind",
            "kind_display",
            "site",
            "site_name",
            "model_version",
            "model_version_name",
            "message",
            "value",
            "limit",
            "window_cases",
            "created_at",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_at",
        ]
        read_only_fields = fields


PERFORMANCE_SCHEMA = inline_serializer(
    "ModelPerformance",
    fields={
        "laboratory": serializers.DictField(),
        "window_cases": serializers.IntegerField(),
        "min_cases": serializers.IntegerField(),
        "drift_alert_level": serializers.FloatField(),
        "rows": serializers.ListField(child=serializers.DictField()),
        "alerts": serializers.ListField(child=serializers.DictField()),
    },
)


class PerformanceView(APIView):
    @extend_schema(
        responses={200: PERFORMANCE_SCHEMA, **error_responses(401, 403, 404)},
        summary="Model performance per referring site and model version",
    )
    def get(self, request):
        response = Response(performance.report_for(request.user, request.query_params.get("site")))
        add_never_cache_headers(response)
        return response


@extend_schema_view(get=extend_schema(responses={200: AlertSerializer(many=True), **error_responses(401, 403, 404)}))
class AlertList(generics.ListAPIView):
    serializer_class = AlertSerializer

    def get_queryset(self):
        user = self.request.user
        permissions.require_role(permissions.sees_monitoring_alerts(user), "Only the laboratory's staff see alerts.")
        return alerts.alerts_for(user)


class AlertAcknowledge(APIView):
    @extend_schema(
        request=None,
        responses={200: AlertSerializer, **error_responses(401, 403, 404, 409)},
        summary="Acknowledge a monitoring alert",
    )
    def post(self, request, pk):
        permissions.require_role(permissions.sees_monitoring_alerts(request.user))
        alert = alerts.acknowledge(user=request.user, alert=alerts.get_alert_for(request.user, pk), request=request)
        return Response(AlertSerializer(alert).data)
