"""REST API of notifications. Wired under /api/ by notifications.api_urls.

- GET  /api/notifications/[?unread=1]   the user's notices, newest first (paginated), with the unread count
- POST /api/notifications/read/         {"ids": [..]} marks those read; {} marks all read
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import error_responses
from notifications import services
from notifications.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    case_reference = serializers.SerializerMethodField()
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "kind", "case", "case_reference", "title", "body", "url", "created_at", "read_at", "is_read"]
        read_only_fields = fields

    def get_case_reference(self, notification) -> str | None:
        return notification.case.reference if notification.case_id else None


class MarkReadSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=1000)


class NotificationList(generics.ListAPIView):
    serializer_class = NotificationSerializer

    @extend_schema(
        summary="Your notifications, newest first",
        parameters=[OpenApiParameter("unread", bool, required=False, description="1: unread ones only")],
        responses={200: NotificationSerializer(many=True), **error_responses(400, 401, 404)},
    )
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["X-Unread-Count"] = str(services.unread_count(request.user))
        return response

    def get_queryset(self):
        notifications = services.notifications_for(self.request.user).select_related("case")
        if self.request.query_params.get("unread") in ("1", "true"):
            notifications = notifications.filter(read_at__isnull=True)
        return notifications


class NotificationMarkRead(APIView):
    @extend_schema(
        summary="Mark notifications read (all when no ids are given)",
        request=MarkReadSerializer,
        responses={
            200: inline_serializer(
                "NotificationsMarked",
                fields={"marked": serializers.IntegerField(), "unread": serializers.IntegerField()},
            ),
            **error_responses(400, 401),
        },
    )
    def post(self, request):
        serializer = MarkReadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        marked = services.mark_read(request.user, serializer.validated_data.get("ids"))
        return Response({"marked": marked, "unread": services.unread_count(request.user)})
