"""Result dicts in the shape of the expand contract (issue 20: the certificate in nats beside
the |E g|^2 test, intervals, family-wise verdicts) and of the grow experiment, for page tests
that need no training run; and an expand result as stored before issue 20, which must still
render and serve."""

from __future__ import annotations

from typing import Any

SEEDS = (0, 1, 2)
HEADLINE_POSITION = 4
"""The position with the largest mean realized gain in `expand_result()`."""


def _curve(start: float, slope: float, steps: int = 100, points: int = 10) -> list[list[float]]:
    width = steps // points
    return [[float(width * (i + 1)), start - slope * i] for i in range(points)]


def _jumpboard_and_realized(gain: float, gain_ci_method: str) -> dict[str, Any]:
    """An insertion record's jumpboard and realized sections (the same in both contracts)."""
    return {
        "jumpboard": {
            "step": 0.5,
            "val_risk_delta": -0.001,
            "test_risk_delta": -0.0011,
            "test_risk_delta_ci": [-0.0019, -0.0003],
        },
        "realized": {
            "steps": 100,
            "base_test_risk": 0.40,
            "base_test_error": 0.11,
            "expanded_test_risk": 0.38 - gain,
            "expanded_test_error": 0.10,
            "control_test_risk": 0.38,
            "control_test_error": 0.10,
            "gain_vs_control": gain,
            "gain_ci": [gain - 0.006, gain + 0.006],
            "gain_ci_method": gain_ci_method,
        },
    }


def _older_record(position: int, seed: int, gain: float, drift: float) -> dict[str, Any]:
    holds = position == HEADLINE_POSITION
    return {
        "position": position,
        "seed": seed,
        "depth_before": 4,
        "depth_after": 5,
        "function_drift_eval": drift,
        "function_drift_train": drift,
        "descent": {
            "grad_norm_sq_train": 4e-4,
            "grad_norm_sq_val": 3e-4,
            "grad_norm_sq_unbiased": 3.1e-4 if holds else 2e-5,
            "grad_norm_sq_lcb": 1.2e-4 if holds else -3e-5,
            "confidence": 0.95,
            "verdict": "holds" if holds else "undecided",
            "verdict_reason": "lower bound above the numerical floor"
            if holds
            else "bound straddles 0",
            "condition_holds": holds,
            "cosine_train_val": 0.61,
            "predicted_val_risk_delta": -2e-4,
        },
        **_jumpboard_and_realized(gain, "paired_bootstrap(test_examples)"),
    }


def older_expand_result(*, drift_at: int | None = 2) -> dict[str, Any]:
    """A finished expand result as stored before issue 20 (three-valued |E g|^2 verdicts,
    `*_lcb`, `certified_gain`, no certificate in nats): 5 positions scanned, positions 2 and 4
    continued over 3 seeds; the old verdict holds family-wise at position 4 only, where the gain
    is 0.012 nats [0.004, 0.020]; position `drift_at` drifts by 0.4."""
    gains = {2: (-0.001, 0.002, -0.004), HEADLINE_POSITION: (0.010, 0.012, 0.014)}
    insertions = [
        _older_record(p, s, gains[p][i], 0.4 if p == drift_at else 1e-7)
        for p in gains
        for i, s in enumerate(SEEDS)
    ]
    scan = []
    for p in range(5):
        verdict = "holds" if p == HEADLINE_POSITION else ("fails" if p == 0 else "undecided")
        scan.append(
            {
                "position": p,
                "grad_norm_sq_unbiased": 3.1e-4 if verdict == "holds" else 2e-5,
                "grad_norm_sq_lcb": 1.2e-4 if verdict == "holds" else -3e-5,
                "verdict": verdict,
                "family_verdict": verdict,
                "condition_holds": verdict == "holds",
            }
        )
    positions = [
        {
            "position": 2,
            "n_seeds": 3,
            "verdict_counts": {"holds": 0, "fails": 0, "undecided": 3},
            "family_verdict": "undecided",
            "family_method": "holm",
            "seeds_lcb": -5e-5,
            "certified_gain": 2e-5,
            "certified_gain_lcb": -3e-5,
            "predicted_val_risk_delta": -2e-4,
            "gain_mean": -0.001,
            "gain_std": 0.003,
            "gain_ci": [-0.009, 0.007],
            "gain_ci_method": "two_level_paired_bootstrap(seeds, test_examples)",
        },
        {
            "position": HEADLINE_POSITION,
            "n_seeds": 3,
            "verdict_counts": {"holds": 3, "fails": 0, "undecided": 0},
            "family_verdict": "holds",
            "family_method": "holm",
            "seeds_lcb": 0.9e-4,
            "certified_gain": 3.1e-4,
            "certified_gain_lcb": 1.2e-4,
            "predicted_val_risk_delta": -2e-4,
            "gain_mean": 0.012,
            "gain_std": 0.002,
            "gain_ci": [0.004, 0.020],
            "gain_ci_method": "two_level_paired_bootstrap(seeds, test_examples)",
        },
    ]
    continuation = {}
    for s in SEEDS:
        continuation[f"control seed {s}"] = _curve(0.50, 0.010)
        continuation[f"position 2 seed {s}"] = _curve(0.50, 0.009)
        continuation[f"position {HEADLINE_POSITION} seed {s}"] = _curve(0.49, 0.012)
    return {
        "kind": "expand",
        "test_risk": 0.40,
        "test_error": 0.11,
        "val_risk": 0.41,
        "val_error": 0.12,
        "train_risk": 0.30,
        "train_error": 0.08,
        "parameters": 12_345,
        "device": "cpu",
        "curves": {
            "train/loss": _curve(2.0, 0.15, 300, 10),
            "val/loss": _curve(2.1, 0.15, 300, 10),
            "val/accuracy": [[p[0], 0.1 + 0.08 * i] for i, p in enumerate(_curve(0, 0, 300, 10))],
        },
        "timings": {"train_s": 12.5, "scan_s": 0.4, "steps_per_s": 144.0},
        "artifacts": [],
        "scan": {"method": "single_pass", "reason": "", "positions": scan},
        "insertions": insertions,
        "positions": positions,
        "continuation_curves": continuation,
    }


CERTIFICATES = {
    0: (-0.004, -0.006, -0.002, "fails"),
    1: (0.0002, -0.0009, 0.0013, "undecided"),
    2: (0.0001, -0.0008, 0.0010, "undecided"),
    3: (0.0009, -0.0001, 0.0019, "undecided"),
    HEADLINE_POSITION: (0.0021, 0.0008, 0.0034, "holds"),
}
"""Per scanned position: (risk decrease, low, high, verdict) of the certificate in nats."""


def _certificate(position: int) -> dict[str, Any]:
    decrease, low, high, verdict = CERTIFICATES[position]
    return {
        "risk_decrease": decrease,
        "risk_decrease_ci": [low, high],
        "interval_method": "envelope(kurtosis_t, hall_skew_t)",
        "p_value": 0.001 if verdict == "holds" else (0.999 if verdict == "fails" else 0.3),
        "verdict": verdict,
        "verdict_counts": {
            "holds": 3 * (verdict == "holds"),
            "fails": 3 * (verdict == "fails"),
            "undecided": 3 * (verdict == "undecided"),
        },
        "family_verdict": verdict,
        "min_effect": 0.0,
        "examples": 287,
    }


def _gradient_test(position: int) -> dict[str, Any]:
    shown = position == HEADLINE_POSITION
    return {
        "grad_norm_sq_unbiased": 3.1e-4 if shown else 2e-5,
        "seeds_test_limit": 0.9e-4 if shown else -5e-5,
        "seeds_test_limit_method": "min_over_seeds_of_per_seed_limits",
        "nonzero_gradient_p_value": 0.002 if shown else 0.4,
        "nonzero_gradient": "shown" if shown else "not_shown",
        "nonzero_gradient_counts": {"shown": 3 if shown else 0, "not_shown": 0 if shown else 3},
        "nonzero_gradient_family": "shown" if shown else "not_shown",
        "family_method": "holm",
    }


def _record(position: int, seed: int, gain: float, drift: float) -> dict[str, Any]:
    decrease, low, high, verdict = CERTIFICATES[position]
    shown = position == HEADLINE_POSITION
    return {
        "position": position,
        "seed": seed,
        "depth_before": 4,
        "depth_after": 5,
        "function_drift_eval": drift,
        "function_drift_train": drift,
        "descent": {
            "grad_norm_sq_train": 4e-4,
            "grad_norm_sq_val": 3e-4,
            "grad_norm_sq_unbiased": 3.1e-4 if shown else 2e-5,
            "grad_norm_sq_test_limit": 1.2e-4 if shown else -3e-5,
            "confidence": 0.95,
            "nonzero_gradient_p_value": 0.002 if shown else 0.4,
            "nonzero_gradient": "shown" if shown else "not_shown",
            "nonzero_gradient_reason": "limit above 0" if shown else "limit 0 or below",
            "cosine_train_val": 0.61,
            "step": 0.5,
            "predicted_val_risk_delta": -2e-4,
        },
        "certificate": {
            "risk_decrease": decrease + 0.0001 * (seed - 1),
            "risk_decrease_ci": [low, high + 0.001],
            "interval_method": "envelope(kurtosis_t, hall_skew_t)",
            "confidence": 0.95,
            "min_effect": 0.0,
            "p_value": 0.01 if verdict == "holds" else 0.3,
            "verdict": verdict,
            "verdict_reason": f"interval {verdict}",
            "examples": 287,
            "source": "holdout",
            "base_risk": 0.41,
        },
        **_jumpboard_and_realized(gain, "test_examples_only(one seed)"),
    }


def expand_result(*, drift_at: int | None = 2) -> dict[str, Any]:
    """A finished expand result: 5 positions scanned, positions 2 and 4 continued over 3 seeds;
    the certificate in nats holds family-wise (Holm) at position 4 only (0.0021 nats
    [0.0008, 0.0034]) and fails at position 0, and |E g|^2 > 0 is shown at position 4 only;
    position 4's realized gain is 0.012 nats [0.004, 0.020]; position `drift_at` drifts by 0.4
    (a group-norm-like insertion)."""
    older = older_expand_result(drift_at=drift_at)
    gains = {2: (-0.001, 0.002, -0.004), HEADLINE_POSITION: (0.010, 0.012, 0.014)}
    insertions = [
        _record(p, s, gains[p][i], 0.4 if p == drift_at else 1e-7)
        for p in gains
        for i, s in enumerate(SEEDS)
    ]
    scan = [
        {"position": p, "certificate": _certificate(p), **_gradient_test(p), "per_seed": []}
        for p in range(5)
    ]
    positions = [
        {
            "position": p,
            "n_seeds": 3,
            "certificate": _certificate(p),
            **_gradient_test(p),
            "predicted_val_risk_delta": -2e-4,
            "gain_mean": sum(gains[p]) / 3,
            "gain_std": 0.003 if p == 2 else 0.002,
            "gain_ci": [-0.009, 0.007] if p == 2 else [0.004, 0.020],
            "gain_ci_method": "crossed_random_effects_t(seeds, test_examples)",
        }
        for p in gains
    ]
    return {
        **older,
        "scan": {
            "method": "single_pass",
            "reason": "",
            "certificate_source": "holdout",
            "certificate_examples": 287,
            "min_effect": 0.0,
            "family_method": "holm",
            "positions": scan,
        },
        "insertions": insertions,
        "positions": positions,
    }


def grow_result() -> dict[str, Any]:
    """A finished grow result: 2 -> 4 blocks at epochs 1 and 2 against both controls."""

    def run(depth: int, risk: float) -> dict[str, Any]:
        return {
            "depths": [depth],
            "parameters": 1000 * depth,
            "test_risk": risk,
            "test_error": risk / 4,
            "val_risk": risk,
            "val_error": risk / 4,
            "train_risk": risk,
            "train_error": risk / 4,
            "curves": {"val/loss": _curve(1.5, 0.1 + risk / 10, 400, 8)},
            "train_s": 30.0,
        }

    events = [
        {
            "epoch": 1,
            "step": 100,
            "position": 1,
            "seed": 7,
            "depth_before": 2,
            "depth_after": 3,
            "grad_norm_sq_unbiased_train": 2e-4,
        },
        {
            "epoch": 2,
            "step": 200,
            "position": 2,
            "seed": 8,
            "depth_before": 3,
            "depth_after": 4,
            "grad_norm_sq_unbiased_train": 1e-4,
        },
    ]
    grown = run(4, 0.30)
    return {
        "kind": "grow",
        "test_risk": 0.30,
        "test_error": 0.075,
        "val_risk": 0.30,
        "val_error": 0.075,
        "train_risk": 0.2,
        "train_error": 0.05,
        "parameters": 4000,
        "curves": grown["curves"],
        "timings": {"total_s": 95.0, "train_s": 30.0},
        "artifacts": [],
        "grow": {
            "policy": "best",
            "events": events,
            "final_depths": [4],
            "runs": {
                "grown": grown,
                "control_target": run(4, 0.32),
                "control_start": run(2, 0.36),
            },
        },
    }


GROW_SPEC: dict[str, Any] = {
    "kind": "grow",
    "name": "grow-fixture",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 4, "accelerator": "cpu"},
    "grow": {"at_epochs": [1, 2], "target_depth": 4},
}
EXPAND_SPEC: dict[str, Any] = {
    "kind": "expand",
    "name": "expand-fixture",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 4},
    "train": {"epochs": 3, "accelerator": "cpu"},
    "expand": {"select": "explicit", "positions": [2, 4], "seeds": [0, 1, 2]},
}


KEPT_TRAIN_SPEC: dict[str, Any] = {"kind": "train", "model": {"kind": "mlp"}}
"""A train job's spec for queue tests that store a result without running anything."""
KEPT_TRAIN_RESULT: dict[str, Any] = {
    "kind": "train",
    "test_risk": 0.25,
    "artifacts": ["base.ckpt"],
    "curves": {"train/loss": [[1, 1.0], [2, 0.5]]},
}
"""The result such a job stores: one artifact and a two-point training curve."""
