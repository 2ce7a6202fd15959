"""Results stored by older versions, read under today's names (torch-free).

Until issue 20 the |E g|^2 test was called "the certificate" and had three verdicts; its
one-sided limit was stored as a lower bound (`*_lcb`), the seed mean of U as
`certified_gain`. Today the certificate is the jumpboard model's risk decrease in nats, the
|E g|^2 test has two outcomes (shown / not shown) and every field is named for what it is
(docs/science.md). These functions rename an older result's fields on read; a result already
in today's names passes through unchanged. The database columns were renamed by migration
0009. Older results have no certificate in nats: readers show it as n/a.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from expansion.specs.predictor_names import current_predictors

RENAMED: dict[str, str] = {
    "grad_norm_sq_lcb": "grad_norm_sq_test_limit",
    "grad_norm_sq_lcb_train": "grad_norm_sq_test_limit_train",
    "bound_method": "nonzero_gradient_method",
    "p_value": "nonzero_gradient_p_value",
    "verdict_reason": "nonzero_gradient_reason",
    "seeds_lcb": "seeds_test_limit",
    "seeds_lcb_method": "seeds_test_limit_method",
    "certified_gain": "grad_norm_sq_unbiased",
}
"""Older field -> today's field, for the same quantity."""

OUTCOME_FIELDS: dict[str, str] = {
    "verdict": "nonzero_gradient",
    "verdict_train": "nonzero_gradient_train",
    "family_verdict": "nonzero_gradient_family",
}
"""Older three-valued verdicts of the |E g|^2 test -> today's two-valued outcome fields."""

DROPPED = ("condition_holds", "certified_gain_lcb")
"""Older fields with no meaning today: `condition_holds` is folded into the outcome, and
`certified_gain_lcb` was a mean of per-seed bounds, which bounds nothing."""

SHOWN, NOT_SHOWN = "shown", "not_shown"


def _outcome(verdict: Any) -> str | None:
    """The two-valued outcome of an older verdict: `holds` showed |E g|^2 > 0; `fails` and
    `undecided` showed nothing."""
    if verdict == "holds" or verdict is True:
        return SHOWN
    if verdict in ("fails", "undecided") or verdict is False:
        return NOT_SHOWN
    return None


def _is_older(section: Mapping[str, Any]) -> bool:
    """True for a descent record or position row written before issue 20."""
    if "nonzero_gradient" in section or "certificate" in section:
        return False
    return any(key in section for key in (*RENAMED, *OUTCOME_FIELDS, *DROPPED))


def current_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """A descent record, scan row or position row (with its `per_seed` rows) under today's
    names."""
    out = dict(section)
    if _is_older(section):
        out = {}
        for key, value in section.items():
            if key in DROPPED:
                continue
            if key in OUTCOME_FIELDS:
                out[OUTCOME_FIELDS[key]] = _outcome(value)
            elif key == "verdict_counts" and isinstance(value, Mapping):
                shown = int(value.get("holds") or 0)
                others = int(value.get("fails") or 0) + int(value.get("undecided") or 0)
                out["nonzero_gradient_counts"] = {SHOWN: shown, NOT_SHOWN: others}
            else:
                out[RENAMED.get(key, key)] = value
        if "nonzero_gradient" not in out and "condition_holds" in section:
            out["nonzero_gradient"] = _outcome(section["condition_holds"])
        counts = out.get("nonzero_gradient_counts")
        if "nonzero_gradient" not in out and isinstance(counts, Mapping):
            # the intersection-union outcome: shown iff every seed showed it
            every = counts[SHOWN] > 0 and counts[NOT_SHOWN] == 0
            out["nonzero_gradient"] = SHOWN if every else NOT_SHOWN
    if isinstance(out.get("per_seed"), list):
        out["per_seed"] = [
            current_section(r) if isinstance(r, Mapping) else r for r in out["per_seed"]
        ]
    return out


def current_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """An insertion record under today's names (its `descent` and `predictors`)."""
    out = dict(record)
    if isinstance(record.get("descent"), Mapping):
        out["descent"] = current_section(record["descent"])
    if isinstance(record.get("predictors"), Mapping):
        out["predictors"] = current_predictors(record["predictors"])
    return out


def current_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result dict under today's names: its scan rows, position rows, insertion records and
    growth events."""
    out = dict(result)
    scan = result.get("scan")
    if isinstance(scan, Mapping) and isinstance(scan.get("positions"), list):
        out["scan"] = {
            **scan,
            "positions": [current_section(r) for r in scan["positions"] if isinstance(r, Mapping)],
        }
    if isinstance(result.get("positions"), list):
        out["positions"] = [
            current_section(r) for r in result["positions"] if isinstance(r, Mapping)
        ]
    if isinstance(result.get("insertions"), list):
        out["insertions"] = [
            current_record(r) for r in result["insertions"] if isinstance(r, Mapping)
        ]
    grow = result.get("grow")
    if isinstance(grow, Mapping) and isinstance(grow.get("events"), list):
        out["grow"] = {**grow, "events": [_current_event(e) for e in grow["events"]]}
    return out


def _current_event(event: Any) -> Any:
    """A growth event under today's names (`certified_gain` was U on training batches)."""
    if not isinstance(event, Mapping) or "certified_gain" not in event:
        return event
    renamed = {k: v for k, v in event.items() if k != "certified_gain"}
    renamed.setdefault("grad_norm_sq_unbiased_train", event["certified_gain"])
    return renamed
