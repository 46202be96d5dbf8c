"""Keyset (cursor) pagination for the API's long lists: cases, audit events, analysis jobs.

A page is read straight off an index from where the previous one ended, so page 10,000 costs what
page 1 costs and no request counts the whole list. The answer is ``{"next", "previous",
"results"}``; follow ``next`` (an opaque ``?cursor=``) to read on. ``?page_size=`` (1–100) is kept
from page to page.

Compatibility: a request with ``?page=N`` gets page numbers and ``count`` as before, except that
the count stops at ``core.pagination.COUNT_CAP`` rows (``count_capped`` is then true) and pages
end there: counting a laboratory's million cases on every request cost more than the page itself.
The cursor reads on past any count.
"""

from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from core.api import StandardPagination
from core.pagination import CappedPaginator


class CappedPageNumbers(StandardPagination):
    """``?page=N`` over at most COUNT_CAP rows; a deep page reads its ids off an index first."""

    django_paginator_class = CappedPaginator

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.page.paginator.count,
                "count_capped": self.page.paginator.count_capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )


class KeysetPagination(CursorPagination):
    """Newest first by ``ordering`` (a date-time field, then the primary key)."""

    ordering = ("-created_at", "-pk")
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        self.legacy = CappedPageNumbers() if "page" in request.query_params else None
        if self.legacy is not None:
            return self.legacy.paginate_queryset(queryset, request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if self.legacy is not None:
            return self.legacy.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_page_size(self, request):
        # The same checks (and 400s) as the page-number lists.
        return StandardPagination.get_page_size(self, request)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = False
        if cursor is None:
            return None
        if cursor is False or (cursor.position is not None and parse_datetime(cursor.position) is None):
            raise serializers.ValidationError(
                {self.cursor_query_param: ["This cursor is damaged; start again from the first page."]}
            )
        return cursor


class JobKeysetPagination(KeysetPagination):
    ordering = ("-enqueued_at", "-pk")
