"""The job page's parts for an expand job's answer: the stored answer as the headline, and what
a running expand job has finished so far (its partial result file)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.db.models import Job
from expansion.results.result_file import PARTIAL_RESULT_FILE

NOT_AVAILABLE = "n/a"


def format_interval(
    value: float | None, ci: Sequence[float | None], unit: str = ""
) -> tuple[str, str]:
    """("0.012", "[0.004, 0.020]") with decimals set by the interval's width; n/a parts."""
    lo, hi = (ci[0], ci[1]) if len(ci) == 2 else (None, None)
    if value is None:
        return NOT_AVAILABLE, ""
    if lo is not None and hi is not None and hi > lo:
        # The interval's half-width sets the last shown decimal: 0.012 [0.004, 0.020].
        digits = max(1, min(8, -math.floor(math.log10((hi - lo) / 2))))
        shown = f"{value:.{digits}f}{unit}"
        return shown, f"[{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{value:.3g}{unit}", f"[{NOT_AVAILABLE}]"


def _gain_phrase(gain: float, ci: Sequence[float | None]) -> str:
    """ "lowered test risk by 0.04 nats [0.01, 0.09]" (or raised, the interval flipped)."""
    lo, hi = (ci[0], ci[1]) if len(ci) == 2 else (None, None)
    shown = [lo, hi] if gain >= 0 else [None if hi is None else -hi, None if lo is None else -lo]
    magnitude, interval = format_interval(abs(gain), shown)
    return f"{'lowered' if gain >= 0 else 'raised'} test risk by {magnitude} nats {interval}"


def answer_headline(answer: Mapping[str, Any], held: str) -> tuple[str, str]:
    """The stored answer (expansion.results.answer) as the page's headline and its note."""
    n = len(answer.get("positions_continued") or [])
    seeds = int(answer.get("seeds") or 0)
    level = f"{100 * float(answer.get('confidence') or 0.95):g}%"
    best, gain = answer.get("best_position"), answer.get("best_gain")
    if best is None or gain is None:
        return f"No position was continued; {held}.", ""
    phrase = _gain_phrase(float(gain), answer.get("best_gain_ci") or [None, None])
    adjusted = f"{level}, adjusted for choosing among {n} positions, over {seeds} seeds"
    if answer.get("recommended_position") is not None:
        first = f"Insert at position {best}: it {phrase} against the control ({adjusted})"
    else:
        first = f"No position beats the control: the best, position {best}, {phrase} ({adjusted})"
    parts = [first]
    pooled = answer.get("pooled_gain")
    if pooled is not None and n > 1:
        pooled_phrase = _gain_phrase(float(pooled), answer.get("pooled_gain_ci") or [None, None])
        parts.append(f"averaged over the {n} positions continued, inserting {pooled_phrase}")
    differ = answer.get("positions_differ")
    if differ is not None:
        parts.append(
            "the positions differ"
            if differ == "shown"
            else "no difference between positions was shown"
        )
    parts.append(held)
    note = ""
    if answer.get("recommended_position") is None:
        note = "No adjusted interval lies above 0: this run cannot tell any insertion from the "
        note += "control."
    return "; ".join(parts) + ".", note


def partial_result(job: Job, job_dir: Path | None) -> dict[str, Any]:
    """What a running expand job has finished so far (its scan, then its certificate records),
    from the partial result file in its folder; {} when there is none or it is unreadable."""
    if job_dir is None or job.kind != "expand" or job.status != "running":
        return {}
    try:
        loaded = json.loads((job_dir / PARTIAL_RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
