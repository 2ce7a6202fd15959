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
    """Three-valued answer of the certificate in nats (docs/science.md 2): is the jumpboard
    model's population risk decrease above `expand.min_effect`?"""

    HOLDS = "holds"
    """The interval's lower bound of the risk decrease is above `min_effect`."""
    FAILS = "fails"
    """The interval's upper bound is below `min_effect`: a confident shortfall (with
    `min_effect` 0, the jumpboard model is confidently worse than the base)."""
    UNDECIDED = "undecided"
    """The interval contains `min_effect`, or no interval exists."""


class TestOutcome(enum.StrEnum):
    """Outcome of a test whose null cannot be confirmed (the |E g|^2 = 0 test): the
    alternative was shown, or it was not. "Not shown" never means the null holds."""

    __test__ = False  # a name pytest would otherwise try to collect where it is imported

    SHOWN = "shown"
    NOT_SHOWN = "not_shown"


class CertificateSource(enum.StrEnum):
    """Where the certificate batches come from."""

    HOLDOUT = "holdout"
    """A split carved from the training set before training (`data.certify_fraction`)."""
    FRESH = "fresh"
    """Fresh samples from the data distribution (`teacher` only)."""


class DescentRecord(TypedDict):
    """The gradient statistics of one (position, seed) at W2 = 0, with the test of a non-zero
    expected gradient (|E g|^2 > 0) on the certificate batches."""

    grad_norm_sq_train: float
    """|g_train|^2: squared norm of the full training-split gradient."""
    grad_norm_sq_val: float
    """|g_val|^2: squared norm of the validation-split gradient."""
    grad_norm_sq_unbiased: float
    """U on the certificate batches: unbiased for |E g|^2 of the data distribution."""
    grad_norm_sq_test_limit: float | None
    """The jackknife-t lower limit U - t se (None: n < 3). A test statistic: above the
    numerical floor, the test shows |E g|^2 > 0. Not a lower bound of |E g|^2 in every regime
    (docs/science.md 5)."""
    grad_norm_sq_batch_mean: float
    """mean_i |g_i|^2 over the certificate batches."""
    certificate_source: CertificateSource
    certificate_batches: int
    confidence: float
    nonzero_gradient_method: str
    numerical_floor: float
    nonzero_gradient_p_value: float
    """One-sided p-value of |E g|^2 = 0 on the certificate batches."""
    nonzero_gradient: TestOutcome
    """Whether the certificate batches show |E g|^2 > 0."""
    nonzero_gradient_reason: str
    grad_norm_sq_unbiased_train: float
    """U on the training batches: describes optimization, not the population."""
    grad_norm_sq_test_limit_train: float | None
    train_batches: int
    nonzero_gradient_train: TestOutcome
    cosine_train_val: float
    step: NotRequired[float]
    predicted_val_risk_delta: NotRequired[float]


class CertificateRecord(TypedDict):
    """The certificate in nats of one (position, seed): the jumpboard model's risk decrease
    against the base on the certificate split, which chose neither its direction nor its step."""

    risk_decrease: float
    """Base minus jumpboard model mean cross-entropy on the certificate examples (nats;
    positive = the jumpboard model is better): unbiased for its population risk decrease."""
    risk_decrease_ci: list[float | None]
    """Two-sided interval of the population risk decrease at `confidence`."""
    interval_method: str
    confidence: float
    min_effect: float
    """`expand.min_effect`: the decrease (nats) the verdict asks for."""
    p_value: float
    """One-sided p-value of H0: population risk decrease <= min_effect."""
    verdict: Verdict
    verdict_reason: str
    examples: int
    """Certificate examples the decrease is averaged over."""
    source: CertificateSource
    base_risk: float
    """The base's mean cross-entropy on the same examples."""


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
    gain_ci: NotRequired[list[float | None]]
    """This seed's interval of gain_vs_control over test examples (`gain_interval` with one
    seed: the test set's noise for this trained pair, not the training randomness)."""
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
    certificate: CertificateRecord
    jumpboard: JumpboardRecord
    realized: NotRequired[RealizedRecord]


class VerdictCounts(TypedDict):
    """How many seeds gave each certificate verdict."""

    holds: int
    fails: int
    undecided: int


class OutcomeCounts(TypedDict):
    """How many seeds showed a non-zero expected gradient, and how many did not."""

    shown: int
    not_shown: int


def every_seed_shows(outcomes: Sequence[TestOutcome]) -> TestOutcome:
    """Intersection-union outcome over seeds: shown iff every seed's test shows it."""
    if outcomes and all(o is TestOutcome.SHOWN for o in outcomes):
        return TestOutcome.SHOWN
    return TestOutcome.NOT_SHOWN


def verdict_counts(verdicts: Sequence[Verdict]) -> VerdictCounts:
    """How many of `verdicts` are holds, fails and undecided."""
    return {
        "holds": sum(v is Verdict.HOLDS for v in verdicts),
        "fails": sum(v is Verdict.FAILS for v in verdicts),
        "undecided": sum(v is Verdict.UNDECIDED for v in verdicts),
    }


def outcome_counts(outcomes: Sequence[TestOutcome]) -> OutcomeCounts:
    """How many of `outcomes` are shown and not shown."""
    shown = sum(o is TestOutcome.SHOWN for o in outcomes)
    return {"shown": shown, "not_shown": len(outcomes) - shown}


class PositionCertificate(TypedDict):
    """The certificate in nats of one position over its seeds: the mean over the seeds'
    jumpboard models (each fixed, W1 from its seed) of their risk decrease, on the same
    certificate examples."""

    risk_decrease: float
    """Mean over seeds and certificate examples of base minus jumpboard loss (nats)."""
    risk_decrease_ci: list[float | None]
    """Two-sided interval of the seeds' mean population risk decrease (the seeds' blocks
    fixed; the certificate examples are the noise)."""
    interval_method: str
    p_value: float
    """One-sided p-value of H0: mean population risk decrease <= min_effect."""
    verdict: Verdict
    verdict_counts: VerdictCounts
    """The seeds' own verdicts."""
    family_verdict: Verdict
    """Holm over the scanned positions (holds and fails each at (1 - confidence) / 2)."""
    min_effect: float
    examples: int


class ScanSeedRow(TypedDict):
    """One seed's statistics at a scanned position."""

    seed: int
    grad_norm_sq_unbiased: float
    grad_norm_sq_test_limit: float | None
    grad_norm_sq_batch_mean: float
    grad_norm_sq_unbiased_train: float
    grad_norm_sq_test_limit_train: float | None
    nonzero_gradient_p_value: float
    nonzero_gradient: TestOutcome
    certificate_risk_decrease: float
    certificate_risk_decrease_ci: list[float | None]
    certificate_verdict: Verdict


class ScanPositionRow(TypedDict):
    """A scanned position: its certificate in nats over seeds, beside the test of a non-zero
    expected gradient over seeds."""

    position: int
    certificate: PositionCertificate
    grad_norm_sq_train: float
    """Mean over seeds of |g_train|^2 (an estimate, not a bound)."""
    grad_norm_sq_val: float
    grad_norm_sq_unbiased: float
    """Mean over seeds of U (unbiased for the seed-average |E g|^2; gradient-squared units,
    can be negative)."""
    cosine_train_val: float
    seeds_test_limit: float | None
    """Minimum over seeds of the per-seed jackknife-t limits: the intersection-union test's
    statistic (above the floor at every seed iff every seed shows |E g|^2 > 0)."""
    seeds_test_limit_method: str
    nonzero_gradient_p_value: float
    """Intersection-union p-value of 'every seed's block has |E g|^2 > 0' (max over seeds)."""
    nonzero_gradient: TestOutcome
    """shown iff every seed's test shows it (the intersection-union test)."""
    nonzero_gradient_counts: OutcomeCounts
    nonzero_gradient_family: TestOutcome
    """Holm over the scanned positions at level 1 - confidence."""
    family_method: str
    per_seed: list[ScanSeedRow]


class PositionRow(TypedDict):
    """A continued position: the certificate in nats and the |E g|^2 test beside the realized
    gain with its interval."""

    position: int
    n_seeds: int
    certificate: PositionCertificate
    nonzero_gradient: TestOutcome
    nonzero_gradient_counts: OutcomeCounts
    nonzero_gradient_family: TestOutcome
    nonzero_gradient_p_value: float
    family_method: str
    seeds_test_limit: float | None
    seeds_test_limit_method: str
    grad_norm_sq_unbiased: float
    """Mean over seeds of U on the certificate batches (gradient-squared units; an estimate,
    can be negative)."""
    predicted_val_risk_delta: float
    gain_mean: float | None
    gain_std: float | None
    gain_ci: list[float | None]
    gain_ci_method: str
