"""The report PDF as an HTTP answer (portal and API alike)."""

from django.http import HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers


def pdf_response(version, data, *, download=False):
    response = HttpResponse(data, content_type="application/pdf")
    disposition = "attachment" if download else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{version.filename}"'  # a name we build
    response["X-Content-Type-Options"] = "nosniff"
    response["X-Report-Version"] = str(version.number)
    response["X-Report-SHA256"] = version.sha256
    # Patient data: only this browser keeps it, never a shared cache.
    patch_cache_control(response, private=True, no_store=True)
    patch_vary_headers(response, ["Cookie", "Authorization"])
    return response
