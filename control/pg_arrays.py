"""PostgreSQL array literals built in one pass, for statements that take a whole batch as arrays.

psycopg's client-side binding quotes every element of a list parameter on its own (a regular
expression per string); a batch sent as one literal string (``'{...}'::text[]``) is quoted once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# Numbers and nulls in JSON are what an array literal wants between its braces ("null" is NULL in
# any case); the C encoder writes floats exactly as repr() does.
_json_list = json.JSONEncoder(separators=(",", ":")).encode


def text_element(text: str) -> str:
    """``text`` as a quoted element of an array literal (quotes and backslashes escaped).

    >>> text_element('a"b\\\\c')
    '"a\\\\"b\\\\\\\\c"'
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_array(items: Iterable[str]) -> str:
    """An array literal of text elements.

    >>> text_array(["a", "b,c"])
    '{"a","b,c"}'
    """
    return "{" + ",".join(text_element(item) for item in items) + "}"


def number_array(items: list[int | float | None]) -> str:
    """An array literal of numbers (None: NULL).

    >>> number_array([1, 2.5, None])
    '{1,2.5,null}'
    """
    return "{" + _json_list(items)[1:-1] + "}"
