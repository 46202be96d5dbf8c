"""Template context every portal page needs."""

from django.conf import settings


def demo_mode(request):
    """``demo_mode``: the demo install shows a banner on every page (it must never hold patient data)."""
    return {"demo_mode": settings.DEMO_MODE}
