"""/healthz (liveness), /readyz (readiness) and /metrics (Prometheus, token-protected)."""

import hmac
import os

import prometheus_client
from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from health_check.views import HealthCheckView
from prometheus_client import multiprocess

from ops.health import READINESS_CHECKS
from ops.metrics import TelediagCollector


@never_cache
def healthz(request):
    """Liveness: the process answers. Nothing else is checked (a database outage must not get every
    web container restarted); /readyz says whether it can serve."""
    return JsonResponse({"status": "ok"})


class ReadinessView(HealthCheckView):
    """Database, broker, storage, an active model and applied migrations; 503 when one fails.
    JSON unless the caller asks for something else (?format=text, Accept: text/html)."""

    checks = READINESS_CHECKS

    async def get(self, request, *args, **kwargs):
        if "format" not in request.GET and "text/html" not in request.headers.get("accept", ""):
            request.GET = request.GET.copy()
            request.GET["format"] = "json"
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # the library's "unhealthy"; probes and proxies expect 503
            response.status_code = 503
        return response


def _authorised(request):
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    return bool(token) and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token)


@never_cache
def metrics(request):
    """Prometheus exposition: web requests (django-prometheus) and analysis metrics. Counts and
    timings only, never patient data; still only with the bearer token (TELEDIAG_METRICS_TOKEN)."""
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are off: set TELEDIAG_METRICS_TOKEN.")
    if not _authorised(request):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # several gunicorn workers: add up their files
        base = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = prometheus_client.REGISTRY
    own = prometheus_client.CollectorRegistry(auto_describe=False)
    own.register(TelediagCollector())
    body = prometheus_client.generate_latest(base) + prometheus_client.generate_latest(own)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
