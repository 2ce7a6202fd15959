"""Plain-text table of an `expand` result, one row per chosen position (no torch import).

The certificate (verdict over seeds, family-wise verdict over the scanned positions, the lower
bound of the minimum over seeds of |E g|^2, and U) is shown next to the realized gain against
the control with its interval: the first is a local certificate, not a forecast of the second.
Older results without a key show "n/a".
"""

from __future__ import annotations

from typing import Any

HEADER = (
    "position",
    "verdict (seeds h/f/u)",
    "family",
    "U [lcb over seeds]",
    "pred. val change",
    "realized gain vs control [CI]",
    "seeds",
)


def _num(value: Any, fmt: str = "{:+.2e}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _verdict(pos: dict[str, Any]) -> str:
    verdict = pos.get("verdict")
    if verdict is None:  # results before three-valued verdicts
        holds = pos.get("condition_holds")
        return "n/a" if holds is None else ("holds" if holds else "fails")
    counts = pos.get("verdict_counts") or {}
    tally = "/".join(str(counts.get(k, "?")) for k in ("holds", "fails", "undecided"))
    return f"{verdict} ({tally})"


def _row(pos: dict[str, Any]) -> tuple[str, ...]:
    low, high = pos.get("gain_ci") or [None, None]
    return (
        str(pos["position"]),
        _verdict(pos),
        str(pos.get("family_verdict") or "n/a"),
        f"{_num(pos.get('certified_gain'), '{:.3e}')} [{_num(pos.get('seeds_lcb'))}]",
        _num(pos.get("predicted_val_risk_delta")),
        f"{_num(pos.get('gain_mean'), '{:+.5f}')} "
        f"[{_num(low, '{:+.5f}')}, {_num(high, '{:+.5f}')}]",
        str(pos.get("n_seeds", "")),
    )


def position_table(result: dict[str, Any]) -> str:
    """One row per chosen position: verdicts, U and its bound, predicted change, realized gain
    vs control with its interval; a footer names the methods."""
    positions = result.get("positions") or []
    scan = result.get("scan") or {}
    if not positions:
        scanned = scan.get("positions") or []
        held = sum(r.get("family_verdict") == "holds" for r in scanned)
        return (
            f"no positions were continued (family-wise verdict holds at {held} of {len(scanned)})"
        )
    rows = [HEADER, *(_row(p) for p in positions)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    scanned = scan.get("positions") or []
    held = sum(r.get("family_verdict") == "holds" for r in scanned)
    method = positions[0].get("gain_ci_method", "n/a")
    footer = (
        f"scan: {scan.get('method', '?')}; certificate on {scan.get('certificate_batches', '?')} "
        f"{scan.get('certificate_source', '?')} batches; family-wise "
        f"({scan.get('family_method', 'n/a')}) verdict holds at {held} of {len(scanned)} "
        f"positions; gains in nats of test cross-entropy (positive = the insertion helped), "
        f"CI: {method}"
    )
    return "\n".join([*lines, footer])
