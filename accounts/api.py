"""API for people: who am I, API tokens for scripts, and lab admins managing their organisation's users.

Lab admins (of a referring site or of a reading laboratory) manage the users of their own
organisation only: list, create, change role, deactivate and reactivate. Accounts are never
deleted (the audit trail points at them). Every change is recorded in the audit trail.
"""
from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts.models import Organisation, User
from cases.api.common import StandardPagination, StrictFieldsMixin, require_role
from cases.audit import audit
from cases.errors import DomainError, NotAllowed
from cases.models import AuditEvent
from telediag.api_errors import error_responses

# Which roles make sense in which kind of organisation: a pathologist reads a laboratory's cases,
# a clinician submits a site's cases; every organisation can have administrators.
ROLES_BY_KIND = {
    Organisation.Kind.REFERRING: {User.Role.CLINICIAN, User.Role.LAB_ADMIN},
    Organisation.Kind.READING: {User.Role.PATHOLOGIST, User.Role.LAB_ADMIN},
    Organisation.Kind.BOTH: {User.Role.CLINICIAN, User.Role.PATHOLOGIST, User.Role.LAB_ADMIN},
}


# --------------------------------------------------------------------------------------------
# Selector and services


def organisation_members(user):
    """The accounts of ``user``'s organisation (superusers excluded); others' users are invisible (404)."""
    if not user.is_authenticated or user.organisation_id is None:
        return User.objects.none()
    return User.objects.filter(organisation_id=user.organisation_id, is_superuser=False).order_by("username")


def _require_admin(admin):
    if not admin.is_lab_admin:
        raise NotAllowed("Only lab admins manage users.")


def _check_role_fits(organisation, role, field="role"):
    allowed = ROLES_BY_KIND.get(organisation.kind, set())
    if role not in allowed:
        label = User.Role(role).label.lower() if role in User.Role.values else repr(role)
        raise DomainError(
            f"A {label} cannot belong to {organisation.name} ({organisation.get_kind_display().lower()}).",
            details={field: [f"Choose one of: {', '.join(sorted(allowed))}."]},
        )


def user_create(*, admin, username, password, role, first_name="", last_name="", email="", request=None):
    """Create an account in the admin's own organisation."""
    _require_admin(admin)
    organisation = admin.organisation
    _check_role_fits(organisation, role)
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError(f"The username {username} is taken.", details={"username": ["Already taken."]})
    user = User(
        username=username, first_name=first_name.strip(), last_name=last_name.strip(), email=email.strip(),
        organisation=organisation, role=role,
    )
    try:
        password_validation.validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise DomainError("The password is not strong enough.", details={"password": exc.messages}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            audit(
                AuditEvent.Action.CREATED, actor=admin, request=request,
                object="user", user_id=user.pk, username=user.username, role=role,
            )
    except IntegrityError:
        raise DomainError(f"The username {username} is taken.", details={"username": ["Already taken."]}) from None
    return user


def user_update(*, admin, user, role=None, is_active=None, request=None):
    """Change a member's role and/or activate or deactivate them. Deactivation revokes API tokens."""
    _require_admin(admin)
    if user.organisation_id != admin.organisation_id or user.is_superuser:
        raise NotAllowed("You can only manage users of your own organisation.")
    if user.pk == admin.pk:
        problems = {}
        if role is not None and role != user.role:
            problems["role"] = ["You cannot change your own role."]
        if is_active is False:
            problems["is_active"] = ["You cannot deactivate your own account."]
        if problems:
            raise DomainError("Ask another administrator to change your own account.", details=problems)
    changes = {}
    if role is not None and role != user.role:
        _check_role_fits(admin.organisation, role)
        changes["role"] = [user.role, role]
        user.role = role
    if is_active is not None and is_active != user.is_active:
        changes["is_active"] = [user.is_active, is_active]
        user.is_active = is_active
    if changes:
        with transaction.atomic():
            user.save(update_fields=[name for name in ("role", "is_active") if name in changes])
            if user.is_active is False:
                Token.objects.filter(user=user).delete()
            audit(
                AuditEvent.Action.CHANGED, actor=admin, request=request,
                object="user", user_id=user.pk, username=user.username, changes=changes,
            )
    return user


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
        fields = ["id", "username", "first_name", "last_name", "email", "role", "is_active", "last_login", "date_joined"]
        read_only_fields = fields


class UserCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=User.Role.choices)
    password = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=128, style={"input_type": "password"},
        help_text="Checked against the password rules (length, common passwords, similarity to the name).",
    )


class UserUpdateSerializer(StrictFieldsMixin, serializers.Serializer):
    role = serializers.ChoiceField(choices=User.Role.choices, required=False)
    is_active = serializers.BooleanField(required=False, help_text="false deactivates the account and revokes its API tokens.")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Send role and/or is_active."]})
        return attrs


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


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


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (the same token every time, until revoked)."""

    authentication_classes = []  # no session, hence no CSRF check: scripts post credentials directly
    throttle_classes = [TokenThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={200: TokenSerializer, **error_responses(400, 429)},
        tags=["accounts"],
        description="Exchange a username and password for an API token. Send the token on every later "
        'request as the header "Authorization: Token <token>". Wrong credentials or an inactive account '
        "answer 400. Deactivating an account revokes its tokens.",
    )
    def post(self, request, *args, **kwargs):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, _created = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


@extend_schema_view(
    list=extend_schema(summary="Users of your organisation (lab admins)", responses={200: UserSerializer(many=True), **error_responses(400, 401, 403)}),
    retrieve=extend_schema(summary="One user of your organisation (lab admins)", responses={200: UserSerializer, **error_responses(401, 403, 404)}),
    create=extend_schema(
        summary="Create a user in your organisation (lab admins)",
        request=UserCreateSerializer, responses={201: UserSerializer, **error_responses(400, 401, 403)},
    ),
    partial_update=extend_schema(
        summary="Change a user's role or deactivate/reactivate them (lab admins)",
        request=UserUpdateSerializer, responses={200: UserSerializer, **error_responses(400, 401, 403, 404)},
    ),
)
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = UserSerializer
    pagination_class = StandardPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return User.objects.none()
        return organisation_members(self.request.user)

    def get_object(self):
        require_role(self.request.user.is_lab_admin, "Only lab admins manage users.")
        return super().get_object()  # 404 unless the user belongs to the requester's organisation

    def list(self, request, *args, **kwargs):
        require_role(request.user.is_lab_admin, "Only lab admins manage users.")
        return super().list(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        require_role(request.user.is_lab_admin, "Only lab admins manage users.")
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(admin=request.user, request=request, **serializer.validated_data)
        location = reverse("api-user-detail", args=[user.pk])
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED, headers={"Location": location})

    def partial_update(self, request, *args, **kwargs):
        user = self.get_object()
        serializer = UserUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_update(admin=request.user, user=user, request=request, **serializer.validated_data)
        return Response(UserSerializer(user).data)
