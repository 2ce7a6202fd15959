"""Controlled continuation: the realized test-risk change of an insertion (docs/design.md 1.5).

From the same trained base, the *expanded* arm inserts the block(s) and trains K steps; the
*control* arm trains the unexpanded base for the same K steps with the same data order,
optimizer settings and seed. The base optimizer state (keyed by parameter name) carries over
into both arms; the new block's parameters join as new parameter groups, told apart from the
existing ones by identity (`id(p)`), never by value. A plain PyTorch loop: both arms are short
and must be exactly comparable.

Each arm keeps its per-example test losses, so a gain's interval can include the finite test
set's noise: `expansion.insertion.bounds.gain_interval` of the control-minus-expanded loss
differences, per seed over its test examples, per position over seeds and test examples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for
from expansion.insertion.bounds import gain_interval, gain_interval_method
from expansion.models.evaluate import evaluate
from expansion.models.network import PostNormResNet
from expansion.specs.sections import TrainSpec
from expansion.training.batched_arms import ArmPlan, TrainedArm, expanded_arm, train_arms
from expansion.training.optim import clone_parameter_state, weight_decay_groups

EVAL_CHUNK = 2048

logger = logging.getLogger(__name__)

NamedState = dict[str, Any]


@dataclass
class ArmResult:
    """Test risk and error of one arm after K steps."""

    test_risk: float
    test_error: float
    train_loss: float
    """Mean training loss over the K steps."""
    test_losses: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False)
    """Per-example test cross-entropy (float64), in test-set order."""
    early_val_risk: dict[int, float] = field(default_factory=dict)
    """Validation risk after each of the requested early steps k < K (early-gain predictors)."""
    loss_curve: list[list[float]] = field(default_factory=list)
    """[step, mean training loss over the window ending at step]: CURVE_POINTS windows."""


@torch.no_grad()
def per_example_test(
    model: PostNormResNet, x: torch.Tensor, y: torch.Tensor
) -> tuple[np.ndarray, float]:
    """(per-example cross-entropy, 0-1 risk) of `model` in eval mode."""
    was_training = model.training
    model.eval()
    losses, wrong = [], 0
    for bx, by in zip(torch.split(x, EVAL_CHUNK), torch.split(y, EVAL_CHUNK), strict=True):
        logits = model(bx).float()
        losses.append(F.cross_entropy(logits, by, reduction="none").double().cpu())
        wrong += int((logits.argmax(dim=1) != by).sum())
    model.train(was_training)
    return torch.cat(losses).numpy(), wrong / max(1, len(y))


def build_optimizer(
    model: PostNormResNet,
    train: TrainSpec,
    lr: float,
    base_names: dict[int, str],
    base_state: NamedState | None,
) -> torch.optim.Optimizer:
    """AdamW/SGD over `model`: existing parameters (ids in `base_names`) carry the base state;
    the others (new blocks) form their own parameter groups with fresh state.

    Weight decay applies to weight matrices and kernels only, as in base training.
    """
    existing: list[torch.nn.Parameter] = []
    new: list[torch.nn.Parameter] = []
    for p in model.parameters():
        (existing if id(p) in base_names else new).append(p)
    groups = [
        group
        for params, role in ((existing, "existing"), (new, "new"))
        for group in weight_decay_groups(params, train.weight_decay, role=role)
    ]
    if train.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=lr)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=train.momentum)
    saved = (base_state or {}).get("state", {})
    for p in existing:
        state = saved.get(base_names[id(p)])
        if state:
            opt.state[p] = clone_parameter_state(state, p.device)
    return opt


def train_steps(
    model: PostNormResNet,
    optimizer: torch.optim.Optimizer,
    bundle: DataBundle,
    train: TrainSpec,
    steps: int,
    seed: int,
    on_step: Callable[[], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    losses: list[float] | None = None,
) -> float:
    """K optimizer steps in train mode; the data order (and augmentation) is a function of seed.

    Returns the mean training loss over the steps. `on_checkpoint(step)` runs after every step;
    `losses`, when given, receives each step's loss.
    """
    augment = augmentation_for(bundle.name) if bundle.augment else None
    batches = DeviceBatches(
        bundle.x_train, bundle.y_train, train.batch_size, seed=seed, augment=augment
    )
    model.train()
    done, total_loss = 0, 0.0
    while done < steps:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, label_smoothing=train.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_loss = float(loss.detach())
            total_loss += step_loss
            if losses is not None:
                losses.append(step_loss)
            done += 1
            if on_step is not None:
                on_step()
            if on_checkpoint is not None:
                on_checkpoint(done)
            if done >= steps:
                break
    model.eval()
    return total_loss / max(done, 1)


def run_arm(
    base: PostNormResNet,
    base_state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    positions: Sequence[int],
    seed: int,
    steps: int,
    lr: float,
    on_step: Callable[[], None] | None = None,
    early_steps: Sequence[int] = (),
    early_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    keep: list[PostNormResNet] | None = None,
) -> ArmResult:
    """One arm: a copy of the base, expanded at `positions` (none = control), trained K steps.

    With `early_steps` the arm's risk on `early_data` (validation) is read after those steps;
    with `keep`, the trained network is appended to it.
    """
    model, base_names = expanded_arm(base, ArmPlan(tuple(positions), seed))
    if keep is not None:
        keep.append(model)
    optimizer = build_optimizer(model, train, lr, base_names, base_state)
    early: dict[int, float] = {}
    wanted = set(early_steps) if early_data is not None else set()

    def read_early(step: int) -> None:
        if step in wanted and early_data is not None:
            early[step] = evaluate(model, *early_data)[0]  # evaluate restores train mode

    step_losses: list[float] = []
    loss = train_steps(
        model,
        optimizer,
        bundle,
        train,
        steps,
        seed,
        on_step,
        read_early if wanted else None,
        step_losses,
    )
    losses, error = per_example_test(model, bundle.x_test, bundle.y_test)
    return ArmResult(
        test_risk=float(losses.mean()),
        test_error=error,
        train_loss=loss,
        test_losses=losses,
        early_val_risk=early,
        loss_curve=window_means(step_losses),
    )


CURVE_POINTS = 25


def window_means(losses: Sequence[float], points: int = CURVE_POINTS) -> list[list[float]]:
    """[step, mean of the losses in the window ending at step] for about `points` windows."""
    if not losses:
        return []
    width = max(1, math.ceil(len(losses) / points))
    curve = []
    for end in range(width, len(losses) + width, width):
        window = losses[end - width : min(end, len(losses))]
        curve.append([float(min(end, len(losses))), sum(window) / len(window)])
    return curve


def realized_record(
    base: ArmResult | tuple[float, float],
    expanded: ArmResult,
    control: ArmResult,
    steps: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The `realized` fields of an insertion record (docs/design.md 5), with this seed's interval of
    the gain over its test examples where both arms kept per-example losses."""
    base_risk, base_error = (
        (base.test_risk, base.test_error) if isinstance(base, ArmResult) else base
    )
    record: dict[str, Any] = {
        "steps": steps,
        "base_test_risk": base_risk,
        "base_test_error": base_error,
        "expanded_test_risk": expanded.test_risk,
        "expanded_test_error": expanded.test_error,
        "control_test_risk": control.test_risk,
        "control_test_error": control.test_error,
        "gain_vs_control": control.test_risk - expanded.test_risk,
    }
    diffs = control.test_losses - expanded.test_losses if expanded.test_losses.size else None
    if diffs is not None and diffs.size == control.test_losses.size:
        record["gain_ci"] = list(gain_interval(diffs[None, :], confidence))
        record["gain_ci_method"] = gain_interval_method(1)
    return record


def early_rows(expanded: ArmResult, control: ArmResult) -> list[dict[str, float | int]]:
    """Per early step: both arms' validation risk and `gain` = control - expanded."""
    return [
        {
            "step": k,
            "expanded_val_risk": expanded.early_val_risk[k],
            "control_val_risk": control.early_val_risk[k],
            "gain": control.early_val_risk[k] - expanded.early_val_risk[k],
        }
        for k in sorted(expanded.early_val_risk)
        if k in control.early_val_risk
    ]


def paired_summary(differences: Sequence[np.ndarray], confidence: float) -> dict[str, Any]:
    """Gain of one position over seeds: mean and std of the per-seed gains and the interval of
    the expected gain (`gain_interval`: seeds, test examples and their interaction).

    `differences` holds, per seed, the per-example test losses of the control minus those of
    the expanded arm (same test examples in the same order for every seed).
    """
    if not differences:
        return {"gain_mean": None, "gain_std": None, "gain_ci": [None, None]}
    d = np.stack([np.asarray(x, dtype=np.float64) for x in differences])
    gains = d.mean(axis=1)
    n = len(gains)
    std = float(np.std(gains, ddof=1)) if n > 1 else None
    return {
        "gain_mean": float(gains.mean()),
        "gain_std": std,
        "gain_ci": list(gain_interval(d, confidence)),
        "gain_ci_method": gain_interval_method(n),
    }


@dataclass
class Continuation:
    """What `controlled_continuation` measured."""

    records: dict[tuple[int, int], dict[str, Any]]
    """`realized` record per (position, seed)."""
    differences: dict[tuple[int, int], np.ndarray]
    """Per (position, seed): control minus expanded per-example test cross-entropy."""


def continuation_lr(expand_lr: float | None, base_final_lr: float, base_peak_lr: float) -> float:
    """The continuation's learning rate: `continue_lr`, else the base training's final LR."""
    if expand_lr is not None:
        return expand_lr
    if base_final_lr < 1e-3 * base_peak_lr:
        logger.warning(
            "the base run ended at lr %.3g (peak %.3g): continuation barely moves; "
            "set expand.continue_lr",
            base_final_lr,
            base_peak_lr,
        )
    return base_final_lr


def controlled_continuation(
    base: PostNormResNet,
    base_state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    positions: Sequence[int],
    seeds: Sequence[int],
    steps: int,
    lr: float,
    on_arm: Callable[[str], None] | None = None,
    on_step: Callable[[], None] | None = None,
    confidence: float = 0.95,
    early_steps: Sequence[int] = (),
    curves: dict[str, list[list[float]]] | None = None,
    batched: bool = False,
) -> Continuation:
    """`realized` records keyed by (position, seed): each expanded arm against its seed's control,
    and the per-example loss differences behind their intervals.

    The control depends on the seed only (same base, data order and settings), so it is
    trained once per seed and shared by every position. With `early_steps`, each record gets
    `early`: validation risks of both arms (and their difference, `gain`) after those steps.
    `curves`, when given, receives each arm's training-loss curve under its label
    (`control seed 0`, `position 4 seed 0`) before `on_arm` is called with that label.
    With `batched`, arms of one architecture train together (`expansion.training.batched_arms`;
    the same results up to float rounding).
    """
    early_data = (bundle.x_val, bundle.y_val) if early_steps else None
    base_risk, base_error = evaluate(base, bundle.x_test, bundle.y_test)
    arms = _train_every_arm(
        base,
        base_state,
        bundle,
        train,
        positions=positions,
        seeds=seeds,
        steps=steps,
        lr=lr,
        on_step=on_step,
        early_steps=early_steps,
        early_data=early_data,
        batched=batched,
        on_arm=on_arm,
        curves=curves,
    )
    records: dict[tuple[int, int], dict[str, Any]] = {}
    differences: dict[tuple[int, int], np.ndarray] = {}
    for seed in seeds:
        control = arms[ArmPlan((), seed)]
        for p in positions:
            expanded = arms[ArmPlan((p,), seed)]
            records[(p, seed)] = realized_record(
                (base_risk, base_error), expanded, control, steps, confidence
            )
            differences[(p, seed)] = control.test_losses - expanded.test_losses
            if early_data is not None:
                records[(p, seed)]["early"] = early_rows(expanded, control)
            logger.info(
                "position %d seed %d: gain vs control %+.5f",
                p,
                seed,
                records[(p, seed)]["gain_vs_control"],
            )
    return Continuation(records, differences)


def arm_label(plan: ArmPlan) -> str:
    """The arm's name in curves and progress: `control seed 0`, `position 4 seed 0`."""
    if not plan.positions:
        return f"control seed {plan.seed}"
    return f"position {','.join(map(str, plan.positions))} seed {plan.seed}"


def _train_every_arm(
    base: PostNormResNet,
    base_state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    positions: Sequence[int],
    seeds: Sequence[int],
    steps: int,
    lr: float,
    on_step: Callable[[], None] | None,
    early_steps: Sequence[int],
    early_data: tuple[torch.Tensor, torch.Tensor] | None,
    batched: bool,
    on_arm: Callable[[str], None] | None,
    curves: dict[str, list[list[float]]] | None,
) -> dict[ArmPlan, ArmResult]:
    """Every seed's control and expanded arms, one by one or batched; each finished arm's
    curve goes into `curves` before `on_arm` hears its label."""
    plans = [ArmPlan(pos, s) for s in seeds for pos in [(), *((p,) for p in positions)]]
    results: dict[ArmPlan, ArmResult] = {}

    def finished(plan: ArmPlan, arm: ArmResult) -> None:
        results[plan] = arm
        if curves is not None:
            curves[arm_label(plan)] = arm.loss_curve
        if on_arm is not None:
            on_arm(arm_label(plan))

    if not batched:
        for plan in plans:
            arm = run_arm(
                base,
                base_state,
                bundle,
                train,
                positions=plan.positions,
                seed=plan.seed,
                steps=steps,
                lr=lr,
                on_step=on_step,
                early_steps=early_steps,
                early_data=early_data,
            )
            finished(plan, arm)
        return results

    def group_done(indices: list[int], arms: list[TrainedArm]) -> None:
        for i, arm in zip(indices, arms, strict=True):
            finished(plans[i], arm_result(arm))

    train_arms(
        base,
        base_state,
        bundle,
        train,
        plans,
        steps=steps,
        lr=lr,
        on_step=on_step,
        on_group=group_done,
        early_steps=early_steps,
        early_data=early_data,
    )
    return results


def arm_result(arm: TrainedArm) -> ArmResult:
    """The `ArmResult` of an arm trained in a batch."""
    return ArmResult(
        test_risk=float(arm.test_losses.mean()),
        test_error=arm.test_error,
        train_loss=sum(arm.step_losses) / max(1, len(arm.step_losses)),
        test_losses=arm.test_losses,
        early_val_risk=arm.early_val_risk,
        loss_curve=window_means(arm.step_losses),
    )
