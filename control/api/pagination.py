from __future__ import annotations

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        """A malformed ``page`` or ``page_size`` is a 400 naming it; a page past the last, a 404."""
        raw = request.query_params.get(self.page_query_param, "1")
        # isdigit() alone admits "²" and other digits int() refuses, and int() refuses over 4300 digits:
        # check the text, never convert a number that is not one.
        if not (raw.isascii() and raw.isdigit()) or not raw.strip("0"):
            raise ValidationError({"page": [f"must be a positive integer, got {raw[:50]!r}"]})
        size = request.query_params.get(self.page_size_query_param)
        if size is not None and (
            not (size.isascii() and size.isdigit() and len(size) <= 6)
            or not 1 <= int(size) <= self.max_page_size
        ):
            message = f"must be an integer from 1 to {self.max_page_size}, got {size[:50]!r}"
            raise ValidationError({"page_size": [message]})
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            count = queryset.count()
            pages = max(1, -(-count // self.get_page_size(request)))
            raise NotFound(f"page {raw[:50]} is out of range: there are {pages} page(s)") from exc
