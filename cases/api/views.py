"""API views: thin. Reads go through cases.access, writes through cases.services.

Access rules, in this order (the same as the portal's):
1. anonymous, or a bad token → 401;
2. a role that never uses the endpoint → 403, whatever the id (nothing leaks);
3. an object the user may not see → 404 (the selectors simply don't return it);
4. a visible object but an action the role may not do (a clinician signing) → 403.
Every failure has the body described in core.api_errors.
"""

from django.db.models import Prefetch
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import SearchFilter
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.selectors import audit_events_visible_to
from audit.services import audit
from cases.access import (
    cases_visible_to,
    get_case_for,
    get_patient_for,
    get_smear_for,
    patients_visible_to,
    review_queue_for,
    search_cases,
)
from cases.api import idempotent
from cases.api.keyset import KeysetPagination
from cases.api.serializers import (
    AmendSerializer,
    AuditEventFilterSerializer,
    AuditEventSerializer,
    CaseCreatedSerializer,
    CaseCreateSerializer,
    CaseFilterSerializer,
    CaseSerializer,
    CaseSummarySerializer,
    PatientSerializer,
    SignSerializer,
)
from cases.media import smear_image_response
from cases.models import Case, Patient, Review, Smear
from cases.services import case_amend, case_sign, case_submit, patient_register
from core import permissions
from core.api import StandardPagination, validated_query
from core.api_errors import ApiErrorSerializer, error_responses
from core.permissions import require_role
from security.signature import verify_signature

CASE_ROLES_ONLY = "Only clinicians and pathologists work with cases."
SUMMARY_RELATED = ("patient", "site", "laboratory", "submitted_by", "signed_by")
DIAGNOSES = Prefetch("diagnoses", queryset=Review.objects.select_related("signed_by").order_by("signed_at", "pk"))


# --------------------------------------------------------------------------------------------
# Patients


@extend_schema_view(
    list=extend_schema(
        summary="Patients of your organisation (clinicians)",
        description="search matches the medical record number, given or family name; every word must match.",
        responses={200: PatientSerializer(many=True), **error_responses(400, 401, 403, 404)},
    ),
    retrieve=extend_schema(
        summary="One patient (clinicians)", responses={200: PatientSerializer, **error_responses(401, 403, 404)}
    ),
    create=extend_schema(
        summary="Register a patient (clinicians)",
        request=PatientSerializer,
        responses={201: PatientSerializer, **error_responses(400, 401, 403)},
    ),
)
class PatientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PatientSerializer
    pagination_class = StandardPagination
    filter_backends = [SearchFilter]
    search_fields = ["mrn", "given_name", "family_name"]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_role(permissions.works_with_patients(request.user), "Only clinicians work with patients.")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Patient.objects.none()
        return patients_visible_to(self.request.user)

    def get_object(self):
        return get_patient_for(self.request.user, self.kwargs[self.lookup_field])

    def retrieve(self, request, *args, **kwargs):
        patient = self.get_object()
        audit(AuditEvent.Action.VIEWED, actor=request.user, patient=patient, request=request, page="api-patient")
        return Response(PatientSerializer(patient).data)

    def create(self, request, *args, **kwargs):
        serializer = PatientSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        patient = patient_register(user=request.user, request=request, **serializer.validated_data)
        location = reverse("api-patient-detail", args=[patient.pk])
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED, headers={"Location": location})


# --------------------------------------------------------------------------------------------
# Cases


def _prefers_minimal(request):
    """Whether the client sent ``Prefer: return=minimal`` (RFC 7240; several preferences may be listed)."""
    preferences = request.headers.get("Prefer", "")
    return any(item.split(";")[0].strip().lower() == "return=minimal" for item in preferences.split(","))


@extend_schema_view(
    list=extend_schema(
        summary="Cases you may see (clinicians: your site's; pathologists: your laboratory's)",
        parameters=[CaseFilterSerializer],
        responses={200: CaseSummarySerializer(many=True), **error_responses(400, 401, 403, 404)},
    ),
    retrieve=extend_schema(
        summary="One case with its smear images and diagnosis history",
        responses={200: CaseSerializer, **error_responses(401, 403, 404)},
    ),
    create=extend_schema(
        summary="Submit a case (clinicians; multipart/form-data)",
        description="Send one or more smear images as files in the repeated field images. If any file is "
        "unusable no case is created, and the 400's details map each rejected file name to the reason. "
        "The 201 carries the whole case; with the header `Prefer: return=minimal` (RFC 7240) only its id, "
        "reference, status and url (cheaper for systems that upload many cases; the answer then has "
        "`Preference-Applied: return=minimal`).",
        parameters=[
            OpenApiParameter(
                "Prefer",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="return=minimal for the short answer",
            ),
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="A key of your choice (1-255 printable characters, e.g. a UUID) "
                "for this submission. Sending the same request again with the same key "
                "creates no second case: the answer is 200 with the body of the first 201 "
                "(and `Idempotent-Replayed: true`). The same key with a different request: "
                "422.",
            ),
        ],
        request={"multipart/form-data": CaseCreateSerializer},
        responses={
            201: OpenApiResponse(
                CaseSerializer,
                description="The case (or, with Prefer: return=minimal, only id, reference, status and url)",
            ),
            200: OpenApiResponse(
                CaseSerializer,
                description="Replay: the same Idempotency-Key was sent before; the body of the first answer",
            ),
            422: OpenApiResponse(
                ApiErrorSerializer, description="The Idempotency-Key was used before for a different request."
            ),
            **error_responses(400, 401, 403, 415),
        },
    ),
    sign=extend_schema(
        summary="Sign the final diagnosis (pathologists of the case's laboratory)",
        description="Of two pathologists signing at once exactly one succeeds; the other gets 409 naming the signer.",
        request=SignSerializer,
        responses={200: CaseSerializer, **error_responses(400, 401, 403, 404, 409)},
    ),
    amend=extend_schema(
        summary="Amend a signed case (pathologists of the case's laboratory)",
        description="The signed diagnosis stays on record; the amendment records the new diagnosis and why.",
        request=AmendSerializer,
        responses={200: CaseSerializer, **error_responses(400, 401, 403, 404)},
    ),
)
class CaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    pagination_class = KeysetPagination
    parser_classes = [MultiPartParser, FormParser]  # submission is a file upload

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_role(permissions.works_with_cases(request.user), CASE_ROLES_ONLY)

    def get_serializer_class(self):
        return {
            "list": CaseSummarySerializer,
            "create": CaseCreateSerializer,
            "sign": SignSerializer,
            "amend": AmendSerializer,
        }.get(self.action, CaseSerializer)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Case.objects.none()
        return cases_visible_to(self.request.user).select_related(*SUMMARY_RELATED).prefetch_related(DIAGNOSES)

    def get_object(self):
        return get_case_for(self.request.user, self.kwargs[self.lookup_field])

    def _detail(self, case, **kwargs):
        """The full representation, read afresh (after a write) through the selector."""
        case = (
            self.get_queryset()
            .prefetch_related(Prefetch("smears", queryset=Smear.objects.order_by("pk")))
            .get(pk=case.pk)
        )
        return Response(CaseSerializer(case, context=self.get_serializer_context()).data, **kwargs)

    def list(self, request, *args, **kwargs):
        filters = validated_query(CaseFilterSerializer, request)
        query = filters.pop("q", "")
        cases = self.get_queryset().filter(**filters).order_by("-created_at", "-pk")
        if query:
            cases = search_cases(cases, query)
        page = self.paginate_queryset(cases)
        data = CaseSummarySerializer(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    def retrieve(self, request, *args, **kwargs):
        case = self.get_object()
        audit(AuditEvent.Action.VIEWED, actor=request.user, case=case, request=request, page="api-case")
        return self._detail(case)

    def create(self, request, *args, **kwargs):
        require_role(permissions.works_with_patients(request.user), "Only clinicians submit cases.")
        serializer = CaseCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = request.headers.get(idempotent.HEADER)
        if key is not None:
            return idempotent.submit_once(request, data, key, lambda: self._submit(request, data))
        return self._submit(request, data)

    def _submit(self, request, data):
        case = case_submit(
            user=request.user,
            patient=data["patient"],
            files=data["images"],
            clinical_notes=data["clinical_notes"],
            priority=data["priority"],
            laboratory=data["laboratory"],
            model_version=data["model_version"],
            request=request,
        )
        headers = {"Location": reverse("api-case-detail", args=[case.pk])}
        if _prefers_minimal(request):
            data = CaseCreatedSerializer(case, context=self.get_serializer_context()).data
            headers["Preference-Applied"] = "return=minimal"
            return Response(data, status=status.HTTP_201_CREATED, headers=headers)
        return self._detail(case, status=status.HTTP_201_CREATED, headers=headers)

    def _case_for_review(self):
        case = self.get_object()  # 404 outside the user's site or laboratory
        user = self.request.user
        require_role(
            permissions.is_case_pathologist(user, case),
            "Only pathologists of the reading laboratory review cases.",
        )
        return case

    @action(detail=True, methods=["post"], parser_classes=[JSONParser, FormParser, MultiPartParser])
    def sign(self, request, *args, **kwargs):
        case = self._case_for_review()
        serializer = SignSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        method = verify_signature(request, request.user, password=data.pop("password"), otp_code=data.pop("otp_code"))
        case_sign(user=request.user, case=case, request=request, signature_method=method, **data)
        return self._detail(case)

    @action(detail=True, methods=["post"], parser_classes=[JSONParser, FormParser, MultiPartParser])
    def amend(self, request, *args, **kwargs):
        case = self._case_for_review()
        serializer = AmendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        method = verify_signature(request, request.user, password=data.pop("password"), otp_code=data.pop("otp_code"))
        case_amend(user=request.user, case=case, request=request, signature_method=method, **data)
        return self._detail(case)


# --------------------------------------------------------------------------------------------
# Review queue


@extend_schema_view(
    get=extend_schema(
        summary="Your laboratory's unsigned cases, urgent first, then oldest first (pathologists)",
        responses={200: CaseSummarySerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ReviewQueueView(ListAPIView):
    serializer_class = CaseSummarySerializer
    pagination_class = StandardPagination

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_role(permissions.reviews_cases(request.user), "Only pathologists have a review queue.")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Case.objects.none()
        return review_queue_for(self.request.user).select_related(*SUMMARY_RELATED).prefetch_related(DIAGNOSES)


class SmearImageView(APIView):
    """The stored image of one smear, for scripts using token authentication."""

    @extend_schema(
        summary="Download a smear image (PNG or JPEG as stored)",
        responses={(200, "image/*"): OpenApiTypes.BINARY, **error_responses(401, 403, 404)},
    )
    def get(self, request, pk):
        require_role(permissions.works_with_cases(request.user), CASE_ROLES_ONLY)
        return smear_image_response(get_smear_for(request.user, pk))


# --------------------------------------------------------------------------------------------
# Audit trail


@extend_schema_view(
    list=extend_schema(
        summary="Your organisation's audit trail, newest first (lab admins)",
        parameters=[AuditEventFilterSerializer],
        responses={200: AuditEventSerializer(many=True), **error_responses(400, 401, 403, 404)},
    ),
    retrieve=extend_schema(
        summary="One audit event (lab admins)", responses={200: AuditEventSerializer, **error_responses(401, 403, 404)}
    ),
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEventSerializer
    pagination_class = KeysetPagination

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_role(permissions.administers_organisation(request.user), "Only lab admins read the audit trail.")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return audit_events_visible_to(self.request.user).select_related("actor_organisation")

    def list(self, request, *args, **kwargs):
        filters = validated_query(AuditEventFilterSerializer, request)
        events = self.get_queryset()
        if "action" in filters:
            events = events.filter(action=filters["action"])
        if "case" in filters:
            events = events.filter(case_id=filters["case"])
        if "actor" in filters:
            events = events.filter(actor_id=filters["actor"])
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)


__all__ = ["AuditEventViewSet", "CaseViewSet", "PatientViewSet", "ReviewQueueView"]
