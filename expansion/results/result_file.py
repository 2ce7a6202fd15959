"""The result record on disk: strict JSON (`result.json`), written atomically."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
PARTIAL_RESULT_FILE = "partial_result.json"
"""What a running job has finished so far (an expand job's scan, then its certificate
records); the job page shows its tables before the job ends. Removed once `result.json` is
written."""


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


def write_result(out_dir: Path, result: dict[str, Any], name: str = RESULT_FILE) -> Path:
    """Write `result` as `out_dir/result.json` (or `name`), atomically, and return its path;
    the final result removes the partial one."""
    path = out_dir / name
    tmp = out_dir / f".{name}.tmp"
    tmp.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False))
    tmp.replace(path)
    if name == RESULT_FILE:
        (out_dir / PARTIAL_RESULT_FILE).unlink(missing_ok=True)
    return path
