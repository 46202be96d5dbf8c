"""The real client address of a request, behind a known number of trusted reverse proxies.

Each trusted proxy appends the address it received the request from to ``X-Forwarded-For``, so
with N proxies the client is the N-th address from the right; everything to the left of it was
written by the client and can be anything. With no trusted proxy (``TELEDIAG_TRUSTED_PROXIES=0``)
the header is ignored. A value that is not an IP address is never returned: the connecting
address (the nearest proxy) is used instead.
"""

import ipaddress

from django.conf import settings


def _valid_ip(value):
    value = (value or "").strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request):
    """The client's IP address as a string, or None when the request carries no usable address."""
    if request is None:
        return None
    meta = request.META
    remote = _valid_ip(meta.get("REMOTE_ADDR"))
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        forwarded = [part for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(forwarded) >= proxies and forwarded != [""]:
            return _valid_ip(forwarded[-proxies]) or remote
    return remote
