"""Sending a report's FHIR Bundle to the hospital's FHIR server (POST, JSON), in bounded time.

The standard library's HTTP client is enough for one POST and keeps the dependency list short.
A failure says whether trying again may help (a timeout, a refused connection, 408/425/429 or 5xx)
or not (any other 4xx: the server rejected the content or the credentials).
"""

import json
import urllib.error
import urllib.request

TRANSIENT_STATUSES = {408, 425, 429}


class PushFailed(Exception):
    def __init__(self, message, *, transient):
        super().__init__(message)
        self.transient = transient


def post_bundle(bundle, url, *, token="", timeout=10.0):
    """POST ``bundle`` to ``url``; the HTTP status of the answer (2xx), or PushFailed."""
    if not url.lower().startswith(("https://", "http://")):
        raise PushFailed(f"The FHIR push address must start with https:// (or http://), not {url!r}.", transient=False)
    request = urllib.request.Request(
        url,
        data=json.dumps(bundle).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an operator's URL
            return response.status
    except urllib.error.HTTPError as exc:
        transient = exc.code in TRANSIENT_STATUSES or exc.code >= 500
        raise PushFailed(f"The FHIR server answered {exc.code} {exc.reason}", transient=transient) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PushFailed(f"The FHIR server could not be reached: {reason}", transient=True) from None
