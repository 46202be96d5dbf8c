"""Building blocks shared by the API views: strict input, pagination, role checks."""

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination

# The largest id any database backend stores (a signed 64-bit integer): larger ids in a filter are
# refused at the API boundary, since SQLite cannot even compare with them (OverflowError).
MAX_ID = 2**63 - 1

# Sent by HTML forms and harmless: never reported as unknown.
_ALWAYS_ALLOWED_INPUT = frozenset({"csrfmiddlewaretoken"})


class StrictFieldsMixin:
    # Refuses input fields the serializer does not accept, instead of silently ignoring them:
    # a typo such as {"is_activ": false} would otherwise "succeed" and change nothing.
    # (A comment, not a docstring: the schema would show it as every serializer's description.)

    def to_internal_value(self, data):
        problems = {}
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            for name in data:
                if name in writable or name in _ALWAYS_ALLOWED_INPUT:
                    continue
                problems[name] = ["This field is read-only."] if name in self.fields else ["Unknown field."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if problems and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **problems}) from None
            raise
        if problems:
            raise serializers.ValidationError(problems)
        return value


class StandardPagination(PageNumberPagination):
    """``?page=N`` (1-based) and ``?page_size=M`` (at most 100); malformed values are a 400."""

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param, "1")
        if raw in self.last_page_strings:
            return paginator.num_pages
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise serializers.ValidationError({self.page_query_param: ["A page number is a whole number from 1."]})
        return raw

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise serializers.ValidationError(
                {self.page_size_query_param: [f"A page size is a whole number from 1 to {self.max_page_size}."]}
            )
        return min(int(raw), self.max_page_size)


def require_role(condition, message):
    """Role check for an action: 403 with ``message`` when ``condition`` is false.

    Object endpoints look the object up first (404 when it is not visible) and check the role
    afterwards, so a 403 only ever concerns an object the user may already see.
    """
    if not condition:
        raise PermissionDenied(message)


def validated_query(serializer_class, request):
    """Validate query parameters with a serializer; malformed ones are a 400 naming the parameter."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return {key: value for key, value in serializer.validated_data.items() if value not in (None, "")}
