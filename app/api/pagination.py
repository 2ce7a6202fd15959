"""Keyset pagination shared by the list endpoints: page size cap and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import HTTPException

from app.api.schemas import MAX_ID

MAX_PAGE = 200
"""The most items one page may hold (`limit`)."""


def decode_cursor(cursor: str) -> int:
    """The id bound of a cursor from `encode_cursor`; 422 naming the cursor when it is not one.

    The bound must be an integer id in 1..MAX_ID + 1: anything else (a float, a bool, a
    number past the database's integer range) is an invalid cursor, not a database error."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"=="))
        before = payload["before"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError, RecursionError):
        before = None
    if isinstance(before, bool) or not isinstance(before, int) or not 1 <= before <= MAX_ID + 1:
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        ) from None
    return int(before)


def encode_cursor(before: int) -> str:
    """An opaque cursor meaning 'rows with an id below `before`'."""
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")
