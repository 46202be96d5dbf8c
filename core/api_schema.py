"""OpenAPI post-processing shared by every API (drf-spectacular's POSTPROCESSING_HOOKS)."""

from core.api_errors import ERROR_DESCRIPTIONS


def document_unsupported_media_type(result, generator, request, public):
    """Every operation that takes a request body answers 415 to a content type its parsers do not
    read (DRF's parser negotiation, before the view runs): say so in its responses, with the one
    error body, where the view did not already."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            operation.setdefault("responses", {}).setdefault(
                "415",
                {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
                    "description": ERROR_DESCRIPTIONS[415],
                },
            )
    return result
