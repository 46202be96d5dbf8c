"""Portal pages of model monitoring (session auth): thin views over monitoring.performance/alerts.

Lab admins read the performance page of their laboratory; pathologists and lab admins see and
acknowledge its alerts. Other roles get 403; another laboratory's alert, or a site that does not
refer to the user's laboratory, 404.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core import permissions
from core.errors import DomainError
from monitoring import alerts, performance

ALERTS_SHOWN = 100


@login_required
@require_GET
def home(request):
    """The navigation's one link: the performance page for lab admins, the alerts for pathologists."""
    if permissions.reads_model_performance(request.user):
        return redirect("monitoring-performance")
    permissions.require_role(permissions.sees_monitoring_alerts(request.user))
    return redirect("monitoring-alerts")


@login_required
@require_GET
def performance_page(request):
    report = performance.report_for(request.user, request.GET.get("site"))
    return render(request, "monitoring/performance.html", {"report": report})


@login_required
@require_GET
def alert_list(request):
    permissions.require_role(permissions.sees_monitoring_alerts(request.user))
    shown = list(alerts.alerts_for(request.user)[:ALERTS_SHOWN])
    return render(
        request,
        "monitoring/alerts.html",
        {
            "open_alerts": [performance.alert_dict(a) for a in shown if a.is_open],
            "past_alerts": [a for a in shown if not a.is_open],
            "reads_performance": permissions.reads_model_performance(request.user),
        },
    )


@login_required
@require_POST
def alert_acknowledge(request, pk):
    alert = alerts.get_alert_for(request.user, pk)
    try:
        alerts.acknowledge(user=request.user, alert=alert, request=request)
    except DomainError as exc:
        if exc.http_status == 403:
            raise
        messages.info(request, exc.message)
    else:
        messages.success(request, f"Alert acknowledged: {alert.site.name}, model {alert.model_version.name}.")
    if request.POST.get("next") == "performance" and permissions.reads_model_performance(request.user):
        return redirect("monitoring-performance")
    return redirect("monitoring-alerts")
