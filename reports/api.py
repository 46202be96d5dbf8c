"""REST API of signed reports. Wired under /api/ by reports.api_urls.

- GET /api/cases/<pk>/report.pdf[?version=N]  the signed report (latest, or version N)
- GET /api/cases/<pk>/fhir/[?version=N]       the same version as a FHIR R4 Bundle (JSON)

Access as for the case (cases.access: another organisation's case is 404); a case not signed yet
answers 409 with the reason. Every download is in the audit trail.
"""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.services import audit
from cases import access
from core import permissions
from core.api_errors import error_responses
from core.permissions import require_role
from reports import services
from reports.responses import pdf_response

VERSION = OpenApiParameter(
    "version", int, required=False, description="Report version (1 = the signature); default the latest."
)
CASE_ROLES_ONLY = "Only clinicians and pathologists open case reports."


class PDFRenderer(BaseRenderer):
    """Lets clients ask for ``Accept: application/pdf``; an error still gets the JSON error body."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return json.dumps(data).encode("utf-8")


class FHIRJSONRenderer(JSONRenderer):
    """FHIR's own JSON media type, for clients that ask for it."""

    media_type = "application/fhir+json"
    format = "fhir"


def _case_for(user, pk):
    require_role(permissions.works_with_cases(user), CASE_ROLES_ONLY)
    return access.get_case_for(user, pk)


class CaseReportPdfView(APIView):
    renderer_classes = [JSONRenderer, PDFRenderer]

    @extend_schema(
        summary="Download the signed report (PDF)",
        parameters=[VERSION],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, **error_responses(400, 401, 403, 404, 409)},
    )
    def get(self, request, pk):
        case = _case_for(request.user, pk)
        version = services.report_version(case, request.query_params.get("version"))
        data = services.read_pdf(version)
        audit(AuditEvent.Action.VIEWED, case=case, request=request, page="report-pdf", version=version.number)
        return pdf_response(version, data, download=request.query_params.get("download") == "1")


class CaseFhirView(APIView):
    renderer_classes = [JSONRenderer, FHIRJSONRenderer]

    @extend_schema(
        summary="The signed report as a FHIR R4 Bundle",
        parameters=[VERSION],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 403, 404, 409)},
    )
    def get(self, request, pk):
        case = _case_for(request.user, pk)
        version = request.query_params.get("version")
        bundle = services.fhir_bundle(case, version, base_url=request.build_absolute_uri("/"))
        audit(AuditEvent.Action.VIEWED, case=case, request=request, page="report-fhir", version=version or "latest")
        response = Response(bundle)
        response["Cache-Control"] = "private, no-store"
        return response
