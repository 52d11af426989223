"""Paged list answers of the admin API: the platform's ``paging`` object in the body, and the
total and the neighbouring pages in headers (``X-Total-Count``; ``Link``, RFC 8288)."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from flask import Response, jsonify, request


def paging_object(page: int, size: int, total: int, order_by: str, direction: str) -> dict:
    """The response's ``paging`` member."""
    return {"page": page, "pageSize": size, "totalCount": total,
            "totalPages": math.ceil(total / size), "orderBy": order_by,
            "orderDirection": direction}


def _page_url(page: int) -> str:
    """This request's path and query with another ``page`` (a relative reference)."""
    args = [(name, value) for name, value in request.args.items(multi=True) if name != "page"]
    return request.path + "?" + urlencode(args + [("page", str(page))])


def link_header(page: int, size: int, total: int) -> str:
    """``first``, ``prev``, ``next`` and ``last`` links of a page (RFC 8288 §3)."""
    last = max(math.ceil(total / size) - 1, 0)
    links = [("first", 0)]
    if page > 0:
        links.append(("prev", min(page - 1, last)))
    if page < last:
        links.append(("next", page + 1))
    links.append(("last", last))
    return ", ".join(f'<{_page_url(number)}>; rel="{rel}"' for rel, number in links)


def paged_response(items_name: str, items: list, *, page: int, size: int, total: int,
                   order_by: str, direction: str) -> Response:
    """A list answer: ``{items_name: [...], "paging": {...}}`` with ``Link`` and
    ``X-Total-Count`` headers."""
    response = jsonify({items_name: items,
                        "paging": paging_object(page, size, total, order_by, direction)})
    response.headers["Link"] = link_header(page, size, total)
    response.headers["X-Total-Count"] = str(total)
    return response
