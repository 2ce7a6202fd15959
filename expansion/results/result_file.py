"""The result record on disk: strict JSON (`result.json`), written atomically."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"


def finite_or_none(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (not a bool); None otherwise.

    JSON has no NaN/inf: a diverged value is stored, and read back, as null.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """`value` with NaN/inf floats replaced by None and tuples by lists (strict JSON)."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_safe_record(record: dict[str, Any]) -> dict[str, Any]:
    """A result or record (a mapping with string keys) made strict JSON by `json_safe`."""
    return {key: json_safe(value) for key, value in record.items()}


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write `result` as `out_dir/result.json` (atomically) and return its path."""
    path = out_dir / RESULT_FILE
    tmp = out_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False))
    tmp.replace(path)
    return path
