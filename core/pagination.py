"""Page numbers over long lists without counting every row (used by portal lists and the admin)."""

from django.core.paginator import Paginator
from django.utils.functional import cached_property

# Beyond this many rows a list says "10,000+" instead of counting every row: an exact count of a
# laboratory's 300,000 cases costs more than the page itself, and nobody pages that far; they filter.
COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    """Page numbers over at most ``COUNT_CAP`` rows; ``count_capped`` says there are more."""

    def __init__(self, object_list, per_page, *args, cap=None, **kwargs):
        super().__init__(object_list, per_page, *args, **kwargs)
        self.cap = COUNT_CAP if cap is None else cap

    @cached_property
    def _capped_count(self):
        # COUNT(*) over a LIMIT: reads at most cap + 1 index entries.
        return self.object_list[: self.cap + 1].count()

    @cached_property
    def count(self):
        return min(self._capped_count, self.cap)

    @cached_property
    def count_capped(self):
        return self._capped_count > self.cap

    def page(self, number):
        """The page's ids first (an index-only read, however deep the OFFSET), then their rows with
        everything the list selects and prefetches: no join or row fetch for the rows skipped."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        ids = list(self.object_list.prefetch_related(None).values_list("pk", flat=True)[bottom:top])
        rows = {row.pk: row for row in self.object_list.filter(pk__in=ids)} if ids else {}
        return self._get_page([rows[pk] for pk in ids if pk in rows], number, self)
