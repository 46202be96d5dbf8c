"""The review workspace's pages: thin views over workspace.queue and cases.services.

Same access rules as the case pages (cases.views): anonymous → login (a background poll gets a
"signed out" fragment and stops), a role without a queue → 403, another laboratory's case → 404.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from cases import access, services
from cases.listing import case_page
from core import permissions
from core.errors import DomainError, NotAllowed
from core.next_url import local_next_url
from core.permissions import require_role
from workspace.forms import QueueFilterForm
from workspace.queue import filtered_queue, queue_counts, with_ai_summaries

PAGE_SIZE = 25
REFRESH_S = 20
# htmx stops polling an element whose response has this status (and still swaps it in).
STOP_POLLING = 286


def _is_htmx(request):
    return request.headers.get("HX-Request") == "true"


@require_GET
def review_queue(request):
    """The queue page; its counts and rows alone when htmx refreshes them in the background."""
    if not request.user.is_authenticated:
        if _is_htmx(request):  # a signed-out poll: say so and stop, rather than swap the login page in
            response = render(request, "workspace/_queue_signed_out.html", status=STOP_POLLING)
            add_never_cache_headers(response)
            return response
        return redirect_to_login(request.get_full_path())
    require_role(permissions.reviews_cases(request.user))
    filters = QueueFilterForm(request.GET or None, user=request.user)
    page = case_page(request, filtered_queue(request.user, filters), PAGE_SIZE)
    page.object_list = with_ai_summaries(page.object_list)
    context = {
        "page_obj": page,
        "filters": filters,
        "counts": queue_counts(request.user),
        "refresh_s": REFRESH_S,
    }
    if _is_htmx(request):
        response = render(request, "workspace/_queue_region.html", context)
        add_never_cache_headers(response)
        return response
    return render(request, "workspace/review_queue.html", context)


@login_required
@require_POST
def case_assign(request, pk):
    """Take a case (assign it to me) or give it back to the queue (``release``)."""
    require_role(permissions.reviews_cases(request.user))
    case = access.get_case_for(request.user, pk)
    release = request.POST.get("action") == "release"
    try:
        services.case_assign(user=request.user, case=case, assignee=None if release else request.user, request=request)
    except NotAllowed as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        if release:
            messages.success(request, f"Case {case.reference} is back in the shared queue.")
        else:
            messages.success(request, f"Case {case.reference} is assigned to you.")
    # Back to the queue page it was taken from, filters and all.
    target = local_next_url(request, request.POST.get("next"))
    return redirect(target) if target else redirect("case-review", pk=case.pk)
