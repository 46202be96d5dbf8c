"""Portal view of signed reports: the PDF, linked from the case page (session login)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect

from audit.models import AuditEvent
from audit.services import audit
from cases import access
from core import permissions
from core.errors import DomainError
from core.permissions import require_role
from reports import services
from reports.responses import pdf_response


@login_required
def report_pdf(request, pk):
    require_role(permissions.works_with_cases(request.user))
    case = access.get_case_for(request.user, pk)  # 404 outside the user's site or laboratory
    try:
        version = services.report_version(case, request.GET.get("version"))
        data = services.read_pdf(version)
    except services.NoSuchVersion as exc:
        raise Http404(exc.message) from None
    except DomainError as exc:  # not signed yet, an unreadable file: say so on the case page
        messages.error(request, exc.message)
        return redirect(case)
    audit(
        AuditEvent.Action.VIEWED,
        actor=request.user,
        case=case,
        request=request,
        page="report-pdf",
        version=version.number,
    )
    return pdf_response(version, data, download=request.GET.get("download") == "1")
