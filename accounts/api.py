"""API for people: who am I, API tokens for scripts, and lab admins managing their organisation's users.

Lab admins (of a referring site or of a reading laboratory) manage the users of their own
organisation only: list, create, change role, deactivate and reactivate. Accounts are never
deleted (the audit trail points at them). The serializers here only check the shape of a request:
the rules (and the audit trail) are in accounts.services, the look-ups in accounts.selectors,
shared with the portal's screens.
"""

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts import services
from accounts.models import Organisation, User
from accounts.selectors import get_managed_user, users_managed_by
from audit.models import AuditEvent
from core.api import StandardPagination, StrictFieldsMixin
from core.api_errors import error_responses
from core.client_ip import client_ip
from core.permissions import administers_organisation, require_role
from security.audit import security_event
from security.errors import LockedOut
from security.tokens import require_second_factor_for_token

# --------------------------------------------------------------------------------------------
# Serializers


class OrganisationRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organisation
        fields = ["id", "name", "kind"]
        read_only_fields = fields


class UserRefSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField(help_text="Full name, or the username when no name is recorded.")

    class Meta:
        model = User
        fields = ["id", "username", "name"]
        read_only_fields = fields

    def get_name(self, user) -> str:
        return str(user)


class MeSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField()
    organisation = OrganisationRefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = User
        fields = ["id", "username", "name", "first_name", "last_name", "email", "role", "organisation"]
        read_only_fields = fields

    def get_name(self, user) -> str:
        return str(user)


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "first_name",
            "last_name",
            "email",
            "role",
            "is_active",
            "last_login",
            "date_joined",
        ]
        read_only_fields = fields


class UserCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=User.Role.choices)
    password = serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        max_length=128,
        style={"input_type": "password"},
        help_text="Checked against the password rules (length, common passwords, similarity to the name).",
    )


class UserUpdateSerializer(StrictFieldsMixin, serializers.Serializer):
    role = serializers.ChoiceField(choices=User.Role.choices, required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="false deactivates the account and revokes its API tokens."
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Send role and/or is_active."]})
        return attrs


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    otp_code = serializers.CharField(
        required=False,
        help_text="Pathologists, lab admins and superusers: a current code from the authenticator "
        "app (or a recovery code). Enrol in the portal first.",
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text='Send it as the header "Authorization: Token <token>".')


# --------------------------------------------------------------------------------------------
# Views


class MeView(APIView):
    """Who am I: the authenticated user, their organisation and role."""

    @extend_schema(operation_id="me", responses={200: MeSerializer, **error_responses(401)}, tags=["accounts"])
    def get(self, request):
        return Response(MeSerializer(request.user).data)


class TokenThrottle(AnonRateThrottle):
    scope = "auth-token"
    rate = "20/minute"

    def get_ident(self, request):
        # The real client behind the trusted proxies, never an address the client chose.
        return client_ip(request) or "unknown"


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (the same token every time, until revoked)."""

    authentication_classes = []  # no session, hence no CSRF check: scripts post credentials directly
    throttle_classes = [TokenThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={200: TokenSerializer, **error_responses(400, 413, 429)},
        tags=["accounts"],
        description="Exchange a username and password for an API token. Send the token on every later "
        'request as the header "Authorization: Token <token>". Wrong credentials or an inactive account '
        "answer 400; after too many failures for one account from one address, 429 (locked_out) until the "
        "lockout ends, even with the right password. Pathologists, lab admins and superusers also send otp_code "
        "(second factor; enrol in the portal first). Deactivating an account revokes its tokens.",
    )
    def post(self, request, *args, **kwargs):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            if getattr(request, "axes_locked_out", False):  # set by django-axes' backend
                raise LockedOut()
            raise serializers.ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        require_second_factor_for_token(request, user, request.data.get("otp_code"))
        token, _created = Token.objects.get_or_create(user=user)
        security_event(AuditEvent.Action.TOKEN_ISSUED, user=user, request=request)
        return Response({"token": token.key})


@extend_schema_view(
    list=extend_schema(
        summary="Users of your organisation (lab admins)",
        responses={200: UserSerializer(many=True), **error_responses(400, 401, 403, 404)},
    ),
    retrieve=extend_schema(
        summary="One user of your organisation (lab admins)",
        responses={200: UserSerializer, **error_responses(401, 403, 404)},
    ),
    create=extend_schema(
        summary="Create a user in your organisation (lab admins)",
        request=UserCreateSerializer,
        responses={201: UserSerializer, **error_responses(400, 401, 403)},
    ),
    partial_update=extend_schema(
        summary="Change a user's role or deactivate/reactivate them (lab admins)",
        request=UserUpdateSerializer,
        responses={200: UserSerializer, **error_responses(400, 401, 403, 404)},
    ),
)
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = UserSerializer
    pagination_class = StandardPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return User.objects.none()
        return users_managed_by(self.request.user).order_by("username")

    def get_object(self):
        require_role(administers_organisation(self.request.user), services.NOT_A_LAB_ADMIN)
        user = get_managed_user(self.request.user, self.kwargs[self.lookup_field])  # 404 for others' users
        self.check_object_permissions(self.request, user)
        return user

    def list(self, request, *args, **kwargs):
        require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
        return super().list(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_create(admin=request.user, request=request, **serializer.validated_data)
        location = reverse("api-user-detail", args=[user.pk])
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED, headers={"Location": location})

    def partial_update(self, request, *args, **kwargs):
        user = self.get_object()
        serializer = UserUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(admin=request.user, user=user, request=request, **serializer.validated_data)
        return Response(UserSerializer(user).data)
