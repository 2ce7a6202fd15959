"""Names of the insertion predictors (docs/design.md 1.5, issue 11); torch-free.

Each predictor is one number measured per (position, seed) at insertion and stored in the
insertion record's `predictors` mapping. Convention: a LARGER value predicts a LARGER realized
gain against the control. The API validates `expand.by` with this module alone, so it must not
import torch. How each is computed: `expansion.insertion.predictors` and docs/science.md.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Predictor(enum.StrEnum):
    """Every predictor stored per insertion; larger = predicts a larger gain."""

    CERTIFICATE_U = "certificate_u"
    """U: unbiased estimate of |E g|^2 (certificate batches; training batches on older runs)."""
    CERTIFICATE_U_TEST_LIMIT = "certificate_u_test_limit"
    """The |E g|^2 test's jackknife-t limit U - t se (a test statistic, not a lower bound)."""
    GRADIENT_SNR = "gradient_snr"
    """U over the mean per-batch squared norm: signal over signal-plus-noise, in [-1, 1]-ish."""
    COSINE_TRAIN_VAL = "cosine_train_val"
    """Cosine between the training and held-out gradients (transfer)."""
    PREDICTED_VAL_GAIN = "predicted_val_gain"
    """Minus the first-order predicted validation-risk change at the line-search step."""
    JUMPBOARD_CERTIFICATE_GAIN = "jumpboard_certificate_gain"
    """The jumpboard model's risk decrease on the certificate split, data that chose neither
    its direction nor its step (the certificate's estimate, nats)."""
    PROBE_VAL_GAIN = "probe_val_gain"
    """Validation-risk drop after k steps training only the new block (rest frozen)."""
    GRAD_REL_W2 = "grad_rel_w2"
    """|g_val|^2 over the mean squared norm of the stage's existing W2 (LARS-style ratio)."""
    GRAD_REL_ACTIVATION = "grad_rel_activation"
    """|g_val|^2 over alpha^2 E|act(W1 h)|^2: the gradient per unit of branch input scale."""
    ADAM_STEP_VAL_GAIN = "adam_step_val_gain"
    """First-order validation gain of the optimizer's first step on the new block."""
    EARLY_GAIN_5PCT = "early_gain_5pct"
    """Control minus expanded validation risk after 5% of the continuation's K steps."""
    EARLY_GAIN_10PCT = "early_gain_10pct"
    """The same after 10% of K."""
    EARLY_GAIN_25PCT = "early_gain_25pct"
    """The same after 25% of K."""


PREDICTOR_NAMES: tuple[str, ...] = tuple(p.value for p in Predictor)
"""Every predictor name, in display order."""

EARLY_GAIN_FRACTIONS: dict[str, float] = {
    Predictor.EARLY_GAIN_5PCT.value: 0.05,
    Predictor.EARLY_GAIN_10PCT.value: 0.10,
    Predictor.EARLY_GAIN_25PCT.value: 0.25,
}
"""Early-gain predictors and the fraction of the continuation's K steps each is read at."""

SELECTABLE_PREDICTORS: tuple[str, ...] = tuple(
    name for name in PREDICTOR_NAMES if name not in EARLY_GAIN_FRACTIONS
)
"""Predictors known before the continuation, so `select: top_k` can rank positions by them."""

DEFAULT_SELECTION_PREDICTOR = Predictor.CERTIFICATE_U.value
"""The default `expand.by`: the selectable predictor with the best within-network Spearman on
the DESIGN suite of benchmarks/calibration.py (+0.56 [+0.19, +0.93] over 12 jobs; best of 10,
max-T adjusted one-sided p 0.004). On the REPLICATE suite, which played no part in the choice,
it does not rank positions better than chance (-0.13 [-0.63, +0.38], one-sided p 0.81) nor
better than the position index: docs/calibration.md. It stays the default because no
selectable predictor is shown to replicate; `select: all` (continue every position) is the
honest design when the ranking matters."""

PREDICTOR_DESCRIPTIONS: dict[str, str] = {
    "certificate_u": "U, unbiased |E g|^2 on certificate batches",
    "certificate_u_test_limit": "jackknife-t limit of U (the |E g|^2 test's statistic)",
    "gradient_snr": "U / mean per-batch |g_i|^2 (gradient signal-to-noise)",
    "cosine_train_val": "cosine(g_train, g_val)",
    "predicted_val_gain": "-t <g_train, g_val> at the line-search step",
    "jumpboard_certificate_gain": "jumpboard model's risk decrease on the certificate split",
    "probe_val_gain": "validation gain after k steps training only the new block",
    "grad_rel_w2": "|g_val|^2 / mean |W2|^2 of the stage's blocks",
    "grad_rel_activation": "|g_val|^2 / (alpha^2 E|act(W1 h)|^2)",
    "adam_step_val_gain": "lr <sign(g_train), g_val> (AdamW first step; SGD: lr <g_train, g_val>)",
    "early_gain_5pct": "control - expanded validation risk after 5% of K steps",
    "early_gain_10pct": "control - expanded validation risk after 10% of K steps",
    "early_gain_25pct": "control - expanded validation risk after 25% of K steps",
}
"""One line per predictor, for tables and the API."""


RENAMED_PREDICTORS: dict[str, str] = {"certificate_lcb": "certificate_u_test_limit"}
"""Older names of predictors that measure the same thing under a new name."""

RETIRED_PREDICTORS: dict[str, str] = {
    "jumpboard_val_gain": (
        "it was the best validation gain of the line search on the same validation data "
        "that chose the step (optimistic); use 'jumpboard_certificate_gain', the same model "
        "measured on the certificate split"
    ),
}
"""Older predictors no longer measured, and why (stored values of them are not read)."""


def current_predictors(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """A stored `predictors` mapping under today's names: renamed predictors moved to their
    new name, retired ones left out (older results carry them)."""
    out: dict[str, float | None] = {}
    for name, value in values.items():
        if name in RETIRED_PREDICTORS:
            continue
        new = RENAMED_PREDICTORS.get(name, name)
        if new not in out or out[new] is None:
            out[new] = value
    return out


def check_selection_predictor(name: str) -> str:
    """`name` (or its new name) if top_k can rank by it, else ValueError naming it and the
    allowed names."""
    name = RENAMED_PREDICTORS.get(name, name)
    if name in SELECTABLE_PREDICTORS:
        return name
    if name in RETIRED_PREDICTORS:
        raise ValueError(f"predictor {name!r} is retired: {RETIRED_PREDICTORS[name]}")
    if name in EARLY_GAIN_FRACTIONS:
        raise ValueError(
            f"predictor {name!r} is read off the continuation, which runs after selection; "
            f"choose one of {', '.join(SELECTABLE_PREDICTORS)}"
        )
    raise ValueError(
        f"unknown predictor {name!r}; choose one of {', '.join(SELECTABLE_PREDICTORS)}"
    )
