"""Keyset pagination shared by the list endpoints: page size cap and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import HTTPException

MAX_PAGE = 200
"""The most items one page may hold (`limit`)."""


def decode_cursor(cursor: str) -> int:
    """The id bound of a cursor from `encode_cursor`; 422 naming the cursor when it is not one."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"=="))
        before = int(payload["before"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        ) from None
    return before


def encode_cursor(before: int) -> str:
    """An opaque cursor meaning 'rows with an id below `before`'."""
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")
