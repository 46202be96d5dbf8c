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
