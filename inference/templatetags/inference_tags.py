"""{% load inference_tags %}{% case_analysis case %}: the AI analysis panel of a case page.

The page must only show cases the user may see (the case views already use cases.access).
"""

from django import template

from inference.status import case_analysis_data

register = template.Library()


@register.inclusion_tag("inference/case_analysis.html", takes_context=True)
def case_analysis(context, case, version=None):
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    return {
        "case": case,
        "analysis": case_analysis_data(
            case, user, version_id=version or (request.GET.get("version") if request else None)
        ),
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
