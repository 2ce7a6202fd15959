"""Typed records of an `expand` result (docs/design.md 5 and the result contract); torch-free.

The result JSON is built from these TypedDicts, so the field names live in one place. Readers
of stored results must tolerate missing keys (older results): every field added after the
first release is `NotRequired`. To add a section (say `predictors`), add a NotRequired key to
`InsertionRecord` and fill it in `expansion.experiments.expand`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NotRequired, TypedDict


class Verdict(enum.StrEnum):
    """Three-valued answer of the descent certificate."""

    HOLDS = "holds"
    """The lower confidence bound of |E g|^2 is above the numerical floor."""
    FAILS = "fails"
    """The bound is at or below minus the floor: no descent direction was certified."""
    UNDECIDED = "undecided"
    """Too few batches for a valid bound, or the bound inside the numerical floor."""


class CertificateSource(enum.StrEnum):
    """Where the certificate batches come from."""

    HOLDOUT = "holdout"
    """A split carved from the training set before training (`data.certify_fraction`)."""
    FRESH = "fresh"
    """Fresh samples from the data distribution (`teacher` only)."""


class DescentRecord(TypedDict):
    """The first-order descent certificate of one (position, seed)."""

    grad_norm_sq_train: float
    """|g_train|^2: squared norm of the full training-split gradient."""
    grad_norm_sq_val: float
    """|g_val|^2: squared norm of the validation-split gradient."""
    grad_norm_sq_unbiased: float
    """U on the certificate batches: unbiased for |E g|^2 of the data distribution."""
    grad_norm_sq_lcb: float | None
    """Lower confidence bound of |E g|^2 from the certificate batches (None: n < 3)."""
    grad_norm_sq_batch_mean: float
    """mean_i |g_i|^2 over the certificate batches."""
    certificate_source: CertificateSource
    certificate_batches: int
    confidence: float
    bound_method: str
    numerical_floor: float
    p_value: float
    """One-sided p-value of |E g|^2 = 0 on the certificate batches (for Holm)."""
    verdict: Verdict
    verdict_reason: str
    condition_holds: bool
    """verdict == holds."""
    grad_norm_sq_unbiased_train: float
    """U on the training batches: describes optimization, not the population."""
    grad_norm_sq_lcb_train: float | None
    train_batches: int
    verdict_train: Verdict
    cosine_train_val: float
    step: NotRequired[float]
    predicted_val_risk_delta: NotRequired[float]


class JumpboardRecord(TypedDict):
    """The expanded model with W2 = -t g_train at a line-searched step t."""

    step: float
    val_risk_delta: float
    test_risk_delta: float
    test_risk_delta_ci: list[float]
    test_risk_delta_ci_method: str
    test_error_delta: float
    line_search: list[list[float]]


class RealizedRecord(TypedDict):
    """Expanded arm against its control after K steps of continuation."""

    steps: int
    base_test_risk: float
    base_test_error: float
    expanded_test_risk: float
    expanded_test_error: float
    control_test_risk: float
    control_test_error: float
    gain_vs_control: float
    """control_test_risk - expanded_test_risk (positive = the insertion helped)."""
    gain_ci: NotRequired[list[float]]
    """This seed's interval of gain_vs_control, bootstrap over test examples."""
    gain_ci_method: NotRequired[str]
    lr: NotRequired[float]


class InsertionRecord(TypedDict):
    """One insertion (position x seed) of an expand result."""

    position: int
    depth_before: int
    depth_after: int
    seed: int
    function_drift_eval: float
    function_drift_train: float
    descent: DescentRecord
    jumpboard: JumpboardRecord
    realized: NotRequired[RealizedRecord]


class VerdictCounts(TypedDict):
    """How many seeds gave each verdict."""

    holds: int
    fails: int
    undecided: int


def seed_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """Intersection-union verdict over seeds: holds iff every seed holds; else undecided when
    some seed is undecided; else fails."""
    if all(v is Verdict.HOLDS for v in verdicts):
        return Verdict.HOLDS
    if any(v is Verdict.UNDECIDED for v in verdicts):
        return Verdict.UNDECIDED
    return Verdict.FAILS


def verdict_counts(verdicts: Sequence[Verdict]) -> VerdictCounts:
    """How many of `verdicts` are holds, fails and undecided."""
    return {
        "holds": sum(v is Verdict.HOLDS for v in verdicts),
        "fails": sum(v is Verdict.FAILS for v in verdicts),
        "undecided": sum(v is Verdict.UNDECIDED for v in verdicts),
    }


class ScanSeedRow(TypedDict):
    """One seed's certificate values at a scanned position."""

    seed: int
    grad_norm_sq_unbiased: float
    grad_norm_sq_lcb: float | None
    grad_norm_sq_batch_mean: float
    grad_norm_sq_unbiased_train: float
    grad_norm_sq_lcb_train: float | None
    p_value: float
    verdict: Verdict


class ScanPositionRow(TypedDict):
    """A scanned position: its seeds' certificates and the position- and family-wise verdicts."""

    position: int
    grad_norm_sq_train: float
    """Mean over seeds of |g_train|^2 (an estimate, not a bound)."""
    grad_norm_sq_val: float
    grad_norm_sq_unbiased: float
    """Mean over seeds of U (unbiased for the seed-average |E g|^2)."""
    cosine_train_val: float
    seeds_lcb: float | None
    """Lower bound of min over seeds of |E g|^2 (the minimum of the per-seed bounds)."""
    seeds_lcb_method: str
    p_value: float
    """Intersection-union p-value of 'every seed's block has a descent direction' (max over
    seeds)."""
    verdict: Verdict
    """holds iff every seed's verdict holds (the intersection-union test)."""
    verdict_counts: VerdictCounts
    family_verdict: Verdict
    family_method: str
    per_seed: list[ScanSeedRow]


class PositionRow(TypedDict):
    """A continued position: certificate verdicts beside the realized gain with its interval."""

    position: int
    n_seeds: int
    verdict: Verdict
    verdict_counts: VerdictCounts
    family_verdict: Verdict
    family_method: str
    seeds_lcb: float | None
    seeds_lcb_method: str
    certified_gain: float
    """Mean over seeds of U on the certificate batches (an estimate, not a bound)."""
    predicted_val_risk_delta: float
    gain_mean: float
    gain_std: float | None
    gain_ci: list[float | None]
    gain_ci_method: str
