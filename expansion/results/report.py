"""Plain-text table of an `expand` result, one row per chosen position (no torch import).

The certificate in nats (the jumpboard model's risk decrease on the certificate split with its
interval, its verdict against `expand.min_effect` and the family-wise verdict over the scanned
positions) and the test of a non-zero expected gradient (shown at how many seeds) are shown
next to the realized gain against the control with its interval: the certificate answers
whether the expanded class holds a better model, not how much continuation gains. Older
results are read under today's names (`expansion.results.older_results`); a missing key
shows "n/a".
"""

from __future__ import annotations

from typing import Any

from expansion.results.older_results import current_result

HEADER = (
    "position",
    "certificate (family)",
    "risk decrease [CI] (nats)",
    "|E g|^2 > 0 shown",
    "U",
    "pred. val change",
    "realized gain vs control [CI]",
    "seeds",
)


def _num(value: Any, fmt: str = "{:+.2e}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _interval(value: Any, ci: Any, fmt: str = "{:+.5f}") -> str:
    low, high = ci if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None)
    return f"{_num(value, fmt)} [{_num(low, fmt)}, {_num(high, fmt)}]"


def _certificate(pos: dict[str, Any]) -> str:
    cert = pos.get("certificate") or {}
    verdict = cert.get("verdict")
    if verdict is None:
        return "n/a"
    return f"{verdict} ({cert.get('family_verdict') or 'n/a'})"


def _shown(pos: dict[str, Any]) -> str:
    counts = pos.get("nonzero_gradient_counts") or {}
    if not counts:
        return str(pos.get("nonzero_gradient") or "n/a")
    total = int(counts.get("shown", 0)) + int(counts.get("not_shown", 0))
    return f"{counts.get('shown', 0)}/{total} seeds"


def _row(pos: dict[str, Any]) -> tuple[str, ...]:
    cert = pos.get("certificate") or {}
    return (
        str(pos["position"]),
        _certificate(pos),
        _interval(cert.get("risk_decrease"), cert.get("risk_decrease_ci")),
        _shown(pos),
        _num(pos.get("grad_norm_sq_unbiased"), "{:.3e}"),
        _num(pos.get("predicted_val_risk_delta")),
        _interval(pos.get("gain_mean"), pos.get("gain_ci")),
        str(pos.get("n_seeds", "")),
    )


def position_table(result: dict[str, Any]) -> str:
    """One row per chosen position: the certificate in nats, the |E g|^2 test, U, the predicted
    change and the realized gain vs control with its interval; a footer names the methods."""
    result = current_result(result)
    positions = result.get("positions") or []
    scan = result.get("scan") or {}
    scanned = scan.get("positions") or []
    held = sum((r.get("certificate") or {}).get("family_verdict") == "holds" for r in scanned)
    if not positions:
        return (
            f"no positions were continued (the certificate holds family-wise at {held} of "
            f"{len(scanned)})"
        )
    rows = [HEADER, *(_row(p) for p in positions)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    method = positions[0].get("gain_ci_method", "n/a")
    footer = (
        f"scan: {scan.get('method', '?')}; certificate on {scan.get('certificate_examples', '?')} "
        f"{scan.get('certificate_source', '?')} examples, min_effect "
        f"{scan.get('min_effect', 'n/a')} nats; it holds family-wise "
        f"({scan.get('family_method', 'n/a')}) at {held} of {len(scanned)} positions; "
        f"gains in nats of test cross-entropy (positive = the insertion helped), CI: {method}"
    )
    return "\n".join([*lines, footer])
