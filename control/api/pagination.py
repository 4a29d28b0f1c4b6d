from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        raw = request.query_params.get(self.page_query_param, "1")
        if not raw.isdigit() or int(raw) < 1:
            raise NotFound(f"page must be a positive integer, got {raw[:50]!r}")
        size = request.query_params.get(self.page_size_query_param)
        if size is not None and (not size.isdigit() or not 1 <= int(size) <= self.max_page_size):
            raise NotFound(f"page_size must be an integer from 1 to {self.max_page_size}, got {size[:50]!r}")
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            count = queryset.count()
            pages = max(1, -(-count // self.get_page_size(request)))
            raise NotFound(f"page {raw} is out of range: there are {pages} page(s)") from exc
