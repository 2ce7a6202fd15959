"""Every predictor of an insertion's realized gain, measured per (position, seed) (issue 11).

The names and their sign convention (larger = predicts a larger gain) live in the torch-free
`expansion.specs.predictor_names`. What each measures:

- gradient: U, the |E g|^2 test's jackknife-t limit (from the `descent` record: certificate
  batches where the run has them) and the gradient signal-to-noise U / mean_i |g_i|^2;
- transfer: cosine(g_train, g_val); the first-order predicted validation gain at the
  line-search step;
- jumpboard: the jumpboard model's risk decrease on the certificate split (the certificate's
  estimate in nats; measured on data that chose neither the direction nor the step);
- probe: train only the new block (everything else frozen, eval-mode norms) for k steps with
  the continuation's optimizer kind and learning rate, then the validation-risk drop;
- scale-free first-order gains: |g_val|^2 relative to the stage's existing W2 squared norm
  (the layer-wise ratio that LARS-style trust ratios use), and relative to alpha^2 times the
  mean squared branch input E|act(W1 h)|^2 (dW2 = alpha * u (x) act(W1 h), so this divides out
  the one factor of the gradient that depends on the position's activation scale); and the
  first-order validation gain of the optimizer's first step on the new block (AdamW's first
  step moves every coordinate by lr * sign(g), so its gain is lr <sign(g_train), g_val>);
- early gain: control minus expanded VALIDATION risk after a few continuation steps, read off
  the continuation (no extra training). Validation, not test: the realized gain is measured
  on the test set, and a predictor that shared the test sample's noise would look better
  calibrated than it is.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for
from expansion.insertion.insert import insert_block
from expansion.insertion.scan import PositionGradient
from expansion.models.evaluate import evaluate
from expansion.models.network import PostNormResNet, ResidualBlock
from expansion.results.result_file import finite_or_none
from expansion.specs.predictor_names import EARLY_GAIN_FRACTIONS, PREDICTOR_NAMES, Predictor
from expansion.specs.sections import TrainSpec

logger = logging.getLogger(__name__)

ACTIVATION_SAMPLES = 512
"""Validation samples behind the mean squared branch input of `grad_rel_activation`."""
PROBE_FRACTION = 0.1
"""Default probe length as a fraction of the continuation's K steps (cost well under 25%)."""


def probe_steps_for(continue_steps: int, probe_steps: int | None) -> int:
    """The probe's k: the spec's value, else PROBE_FRACTION of K (at least 1)."""
    if probe_steps is not None:
        return probe_steps
    return max(1, round(PROBE_FRACTION * continue_steps))


def early_steps_for(continue_steps: int) -> dict[str, int]:
    """Continuation step at which each early-gain predictor is read (at least 1, at most K)."""
    return {
        name: min(continue_steps, max(1, round(fraction * continue_steps)))
        for name, fraction in EARLY_GAIN_FRACTIONS.items()
    }


def stage_w2_norm_sq(model: PostNormResNet, position: int) -> float:
    """Mean squared norm (weight and bias) of the existing blocks' W2 in `position`'s stage."""
    stage, _ = model.position_to_stage_index(position)
    blocks = cast(list[ResidualBlock], list(cast(nn.ModuleList, model.stages[stage])))
    if not blocks:
        return float("nan")
    total = 0.0
    for block in blocks:  # W2's parameters: its weight and its bias
        total += sum(float(p.detach().double().pow(2).sum()) for p in block.w2.parameters())
    return total / len(blocks)


@torch.no_grad()
def branch_input_norm_sq(model: PostNormResNet, position: int, seed: int, x: torch.Tensor) -> float:
    """alpha^2 * mean over samples of |act(W1 h_p)|^2 for the new block (eval mode)."""
    expanded = copy.deepcopy(model).eval()
    block = insert_block(expanded, position, seed)
    captured: list[torch.Tensor] = []
    handle = block.act.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        expanded(x[:ACTIVATION_SAMPLES])
    finally:
        handle.remove()
    a = captured[0].double().flatten(1)
    alpha = float(block.alpha.detach())
    return alpha**2 * float(a.pow(2).sum(dim=1).mean())


def gradient_predictors(
    model: PostNormResNet,
    grad: PositionGradient,
    descent: Mapping[str, Any],
    *,
    optimizer: str,
    lr: float,
    x_val: torch.Tensor,
) -> dict[str, float | None]:
    """The zero-step predictors: U and its test limit, transfer and the scale-free gradient
    forms."""
    u = finite_or_none(descent.get("grad_norm_sq_unbiased"))
    limit = finite_or_none(descent.get("grad_norm_sq_test_limit"))
    batch_mean = finite_or_none(descent.get("grad_norm_sq_batch_mean"))
    if batch_mean is None:  # a certificate without the field: the scan's training batches
        batch_mean = float(grad.batches.double().pow(2).sum(dim=1).mean())
    g_train, g_val = grad.train.double(), grad.val.double()
    val_sq = float(g_val.pow(2).sum())
    w2_sq = stage_w2_norm_sq(model, grad.position)
    act_sq = branch_input_norm_sq(model, grad.position, grad.seed, x_val)
    if optimizer == "adamw":
        first_step = lr * float(torch.sign(g_train) @ g_val)
    else:
        first_step = lr * float(g_train @ g_val)
    predicted = finite_or_none(descent.get("predicted_val_risk_delta"))
    return {
        Predictor.CERTIFICATE_U: u,
        Predictor.CERTIFICATE_U_TEST_LIMIT: limit,
        Predictor.GRADIENT_SNR: (u / batch_mean) if u is not None and batch_mean > 0 else None,
        Predictor.COSINE_TRAIN_VAL: finite_or_none(descent.get("cosine_train_val")),
        Predictor.PREDICTED_VAL_GAIN: None if predicted is None else -predicted,
        Predictor.GRAD_REL_W2: val_sq / w2_sq if w2_sq > 0 else None,
        Predictor.GRAD_REL_ACTIVATION: val_sq / act_sq if act_sq > 0 else None,
        Predictor.ADAM_STEP_VAL_GAIN: first_step,
    }


def train_probe(
    model: PostNormResNet,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    position: int,
    seed: int,
    steps: int,
    lr: float,
) -> PostNormResNet:
    """A copy of `model` expanded at `position` whose new block alone trained `steps` steps.

    The rest of the network is frozen and stays in eval mode (batch-norm statistics do not
    move); the new block trains in train mode with the continuation's optimizer kind and
    learning rate, on the continuation's data order for `seed`. Returned in eval mode.
    """
    probe = copy.deepcopy(model).eval()
    for p in probe.parameters():
        p.requires_grad_(False)
    block = insert_block(probe, position, seed)
    block.train()
    params = [p for p in block.parameters() if p.requires_grad]
    if train.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=lr, weight_decay=train.weight_decay
        )
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=train.momentum)
    augment = augmentation_for(bundle.name) if bundle.augment else None
    batches = DeviceBatches(
        bundle.x_train, bundle.y_train, train.batch_size, seed=seed, augment=augment
    )
    done = 0
    while done < steps:
        for x, y in batches:
            loss = F.cross_entropy(probe(x), y, label_smoothing=train.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    return probe.eval()


def probe_val_gain(
    model: PostNormResNet,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    position: int,
    seed: int,
    steps: int,
    lr: float,
    base_val_risk: float | None = None,
) -> float:
    """Validation-risk drop of the k-step probe (`train_probe`) against the base network."""
    if base_val_risk is None:
        base_val_risk, _ = evaluate(model, bundle.x_val, bundle.y_val)
    probe = train_probe(model, bundle, train, position=position, seed=seed, steps=steps, lr=lr)
    probe_risk, _ = evaluate(probe, bundle.x_val, bundle.y_val)
    return base_val_risk - probe_risk


def early_gains(realized: Mapping[str, Any]) -> dict[str, float | None]:
    """Early-gain predictors from a realized record's `early` rows (None where not measured)."""
    by_step = {int(row["step"]): row for row in realized.get("early") or []}
    steps = early_steps_for(int(realized.get("steps") or 0)) if realized.get("steps") else {}
    out: dict[str, float | None] = {}
    for name in EARLY_GAIN_FRACTIONS:
        row = by_step.get(steps.get(name, -1))
        out[name] = None if row is None else finite_or_none(row.get("gain"))
    return out


def insertion_predictors(
    model: PostNormResNet,
    grad: PositionGradient,
    record: Mapping[str, Any],
    bundle: DataBundle,
    train: TrainSpec,
    *,
    lr: float,
    probe_steps: int,
    base_val_risk: float,
) -> dict[str, float | None]:
    """Every predictor of one insertion record (with `descent`, `certificate`, `realized`)."""
    descent = record.get("descent") or {}
    values: dict[str, float | None] = dict(
        gradient_predictors(
            model, grad, descent, optimizer=train.optimizer, lr=lr, x_val=bundle.x_val
        )
    )
    values[Predictor.JUMPBOARD_CERTIFICATE_GAIN] = finite_or_none(
        (record.get("certificate") or {}).get("risk_decrease")
    )
    values[Predictor.PROBE_VAL_GAIN] = probe_val_gain(
        model,
        bundle,
        train,
        position=grad.position,
        seed=grad.seed,
        steps=probe_steps,
        lr=lr,
        base_val_risk=base_val_risk,
    )
    values.update(early_gains(record.get("realized") or {}))
    return {str(name): values.get(name) for name in PREDICTOR_NAMES}


def selection_scores(
    model: PostNormResNet,
    gradients: Mapping[tuple[int, int], PositionGradient],
    descents: Mapping[tuple[int, int], Mapping[str, Any]],
    bundle: DataBundle,
    train: TrainSpec,
    *,
    by: str,
    positions: Sequence[int],
    seeds: Sequence[int],
    lr: float,
    probe_steps: int,
    certificates: Mapping[tuple[int, int], Mapping[str, Any]] | None = None,
) -> dict[int, float]:
    """Seed-mean of predictor `by` per position, for `select: top_k` (missing values = -inf).

    `certificates` maps (position, seed) to certificate records (`jumpboard_certificate_gain`).
    """
    base_val_risk, _ = evaluate(model, bundle.x_val, bundle.y_val)
    scores: dict[int, float] = {}
    for p in positions:
        values = []
        for s in seeds:
            if by == Predictor.PROBE_VAL_GAIN:
                value: float | None = probe_val_gain(
                    model,
                    bundle,
                    train,
                    position=p,
                    seed=s,
                    steps=probe_steps,
                    lr=lr,
                    base_val_risk=base_val_risk,
                )
            elif by == Predictor.JUMPBOARD_CERTIFICATE_GAIN:
                value = finite_or_none(
                    ((certificates or {}).get((p, s)) or {}).get("risk_decrease")
                )
            else:
                value = gradient_predictors(
                    model,
                    gradients[(p, s)],
                    descents[(p, s)],
                    optimizer=train.optimizer,
                    lr=lr,
                    x_val=bundle.x_val,
                ).get(by)
            if value is not None:
                values.append(value)
        scores[p] = sum(values) / len(values) if values else -math.inf
    return scores
