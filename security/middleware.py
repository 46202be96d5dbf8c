"""Response headers and session rules for every request of the portal and the API."""
from django.conf import settings
from django.utils.cache import add_never_cache_headers


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every response except static files.

    Pages, API answers and smear images carry patient data: no browser, proxy or shared
    workstation cache may keep them. (Static files are answered by WhiteNoise before this runs.)
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(self.static_prefix):
            if "Cache-Control" in response:
                del response["Cache-Control"]
            add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private, max-age=0
        return response


class SecondFactorMiddleware:
    """Sessions of users who must use a second factor reach nothing else until it is verified.

    Pages redirect to enrolment (no device yet) or to the code prompt; the API answers 403 to such
    a session (scripts use tokens, which are issued only after the second factor).
    """

    EXEMPT_PREFIXES = ("/accounts/two-factor/", "/accounts/logout/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not user.is_verified():
            response = self._refuse(request, user)
            if response is not None:
                return response
        return self.get_response(request)

    def _refuse(self, request, user):
        from django.http import JsonResponse
        from django.shortcuts import redirect
        from django.urls import reverse
        from django.utils.http import urlencode

        from security.policy import requires_second_factor
        from security.two_factor import has_second_factor
        from telediag.api_errors import error_body

        path = request.path_info
        if path.startswith(self.EXEMPT_PREFIXES) or not requires_second_factor(user):
            return None
        if path.startswith("/api/"):
            return JsonResponse(error_body(
                "second_factor_required", "Sign in with your second factor in the portal first, or use an API token.",
            ), status=403)
        target = "two-factor-verify" if has_second_factor(user) else "two-factor-setup"
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
