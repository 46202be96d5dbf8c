"""Serving stored smear images. Never public: callers check access first (cases.access)."""

import mimetypes

from django.http import FileResponse, Http404
from django.utils.cache import patch_cache_control, patch_vary_headers

# Content types of what upload validation stores (originals or PNG re-encodings).
IMAGE_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}


def smear_image_response(smear):
    try:
        handle = smear.image.storage.open(smear.image.name, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("The image file is missing from storage.") from None
    stored_extension = smear.image.name.rsplit(".", 1)[-1].lower() if "." in smear.image.name else ""
    content_type = (
        IMAGE_CONTENT_TYPES.get(stored_extension)
        or mimetypes.guess_type(smear.image.name)[0]
        or "application/octet-stream"
    )
    extension = stored_extension if stored_extension.isalnum() else "bin"
    # A name we build ourselves: the uploaded name is untrusted.
    filename = f"{smear.case.reference}-image-{smear.pk}.{extension}"
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    patch_cache_control(response, private=True, max_age=3600)
    patch_vary_headers(response, ["Cookie", "Authorization"])
    return response
