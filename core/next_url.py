"""Where a form sends the user back to: a page of this site, never another host, never an error."""

from django.utils.http import url_has_allowed_host_and_scheme


def local_next_url(request, target):
    """``target`` when it is a path on this site ("/..."), else "".

    Anything else is refused, not only other hosts (an open redirect): ``redirect`` takes a bare
    word such as "0" for the name of a URL and fails on it instead of redirecting."""
    target = target or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""
