"""Plain-text table of an `expand` result, one row per chosen position (no torch import).

The certified first-order gain is shown next to the realized gain against the control, each
with its interval: the first is a local certificate, not a forecast of the second.
"""

from __future__ import annotations

from typing import Any

HEADER = (
    "position",
    "certified gain [lcb]",
    "holds",
    "pred. val change",
    "realized gain vs control [CI]",
    "seeds",
)


def _num(value: Any, fmt: str = "{:+.2e}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _row(pos: dict[str, Any]) -> tuple[str, ...]:
    low, high = pos.get("gain_ci") or [None, None]
    return (
        str(pos["position"]),
        f"{_num(pos.get('certified_gain'), '{:.3e}')} [{_num(pos.get('certified_gain_lcb'))}]",
        "yes" if pos.get("condition_holds") else "no",
        _num(pos.get("predicted_val_risk_delta")),
        f"{_num(pos.get('gain_mean'), '{:+.5f}')} "
        f"[{_num(low, '{:+.5f}')}, {_num(high, '{:+.5f}')}]",
        str(pos.get("n_seeds", "")),
    )


def position_table(result: dict[str, Any]) -> str:
    """One row per chosen position: certified gain (lower bound), condition, predicted change,
    realized gain vs control mean with its paired interval."""
    positions = result.get("positions") or []
    if not positions:
        return "no positions were continued"
    rows = [HEADER, *(_row(p) for p in positions)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    scan = result.get("scan") or {}
    footer = (
        f"scan: {scan.get('method', '?')} over {len(scan.get('positions', []))} positions; "
        "gains in nats of test cross-entropy (positive = the insertion helped)"
    )
    return "\n".join([*lines, footer])
