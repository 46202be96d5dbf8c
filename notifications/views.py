"""Portal pages of notifications: the list, and marking notices read."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.next_url import local_next_url
from notifications import services

PAGE_SIZE = 25


@login_required
def notification_list(request):
    notifications = services.notifications_for(request.user).select_related("case")
    if request.GET.get("unread") == "1":
        notifications = notifications.filter(read_at__isnull=True)
    page = Paginator(notifications, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/list.html",
        {"page_obj": page, "unread_only": request.GET.get("unread") == "1"},
    )


@login_required
@require_POST
def notification_mark_read(request):
    """Mark one notice (``id``) or all of them read, then go back (to ``next`` when it is ours)."""
    ids = None
    if request.POST.get("id"):
        try:
            ids = [int(request.POST["id"])]
        except ValueError:
            ids = []
    services.mark_read(request.user, ids)
    return redirect(local_next_url(request, request.POST.get("next")) or "notification-list")
