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

        from core.api_errors import error_body
        from security.policy import requires_second_factor
        from security.two_factor import has_second_factor

        path = request.path_info
        if path.startswith(self.EXEMPT_PREFIXES) or not requires_second_factor(user):
            return None
        if path.startswith("/api/"):
            return JsonResponse(
                error_body(
                    "second_factor_required",
                    "Sign in with your second factor in the portal first, or use an API token.",
                ),
                status=403,
            )
        target = "two-factor-verify" if has_second_factor(user) else "two-factor-setup"
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")


class PasswordChangeRequiredMiddleware:
    """A user whose password was set by an admin chooses their own before anything else.

    Whether they must is read at sign-in into the session, so a reset applies from the next sign-in.
    """

    EXEMPT_PREFIXES = ("/accounts/password/change/", "/accounts/two-factor/", "/accounts/logout/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not request.path_info.startswith(self.EXEMPT_PREFIXES):
            from security.passwords import SESSION_KEY

            if request.session.get(SESSION_KEY):  # set at sign-in (security.passwords)
                return self._refuse(request)
        return self.get_response(request)

    def _refuse(self, request):
        from django.http import JsonResponse
        from django.shortcuts import redirect
        from django.urls import reverse
        from django.utils.http import urlencode

        from core.api_errors import error_body

        if request.path_info.startswith("/api/"):
            return JsonResponse(
                error_body(
                    "password_change_required",
                    "Choose your own password in the portal first.",
                ),
                status=403,
            )
        return redirect(f"{reverse('password-change')}?{urlencode({'next': request.get_full_path()})}")


class SessionIdleTimeoutMiddleware:
    """Signs a portal session out after ``SESSION_IDLE_TIMEOUT_S`` without the user doing anything.

    Background refreshes (the analysis panel's htmx polling, a GET sent with
    ``X-Telediag-Background: 1``) do not count as activity, so a page left open on a shared
    workstation still times out.
    """

    KEY = "telediag_last_activity"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import time

        from django.conf import settings
        from django.contrib.auth import logout

        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = int(time.time())
            last = request.session.get(self.KEY)
            if last is not None and now - last > settings.SESSION_IDLE_TIMEOUT_S:
                logout(request)
                return self._timed_out(request)
            # Written at most once a minute: not a session save on every request.
            background = request.method == "GET" and request.headers.get("X-Telediag-Background") == "1"
            if last is None or (not background and now - last >= 60):
                request.session[self.KEY] = now
        return self.get_response(request)

    def _timed_out(self, request):
        from django.contrib import messages
        from django.http import JsonResponse
        from django.shortcuts import redirect
        from django.urls import reverse
        from django.utils.http import urlencode

        from core.api_errors import WWW_AUTHENTICATE, error_body

        if request.path_info.startswith("/api/") or request.headers.get("X-Telediag-Background") == "1":
            response = JsonResponse(
                error_body("session_expired", "Signed out after a period of inactivity."), status=401
            )
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
            return response
        messages.info(request, "You were signed out after a period of inactivity.")
        return redirect(f"{reverse('login')}?{urlencode({'next': request.get_full_path()})}")
