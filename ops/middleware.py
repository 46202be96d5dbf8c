"""Probe answers before host checks, and a request id on every request and its log lines."""

import logging
import re
import time
import uuid

from asgiref.sync import async_to_sync

from core import log_context

logger = logging.getLogger("telediag.requests")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class HealthProbeMiddleware:
    """Answer /healthz, /readyz and /metrics first: orchestrators probe by IP address and Prometheus
    scrapes by container name, over plain HTTP, which ALLOWED_HOSTS and the HTTPS redirect would
    refuse. These views build no URL from the Host header; /metrics checks its own token."""

    def __init__(self, get_response):
        self.get_response = get_response
        from ops import views

        self.routes = {"/healthz": views.healthz, "/readyz": views.ReadinessView.as_view(), "/metrics": views.metrics}

    def __call__(self, request):
        view = self.routes.get(request.path_info)
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        response = view(request)
        if hasattr(response, "__await__"):  # the readiness view is async (django-health-check)
            response = async_to_sync(_result)(response)
        return response


async def _result(awaitable):
    return await awaitable


class RequestIdMiddleware:
    """X-Request-ID: the proxy's when it sends a sane one, else a new one; echoed in the response and
    put on the request's log lines. One access line per request: method, path (no query string,
    which may hold search terms), status and duration."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = log_context.request_id.set(request_id)
        case_token = log_context.case_id.set("")
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            logger.info(
                "%s %s %s %.0f ms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response
        finally:
            log_context.case_id.reset(case_token)
            log_context.request_id.reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # /cases/<pk>/... and /api/cases/<pk>/...: the case's id on the request's log lines.
        if request.path.startswith(("/cases/", "/api/cases/")):
            pk = view_kwargs.get("pk") or view_kwargs.get("case_pk")
            if pk is not None:
                log_context.bind_case(pk)
