"""Controlled continuation: the realized test-risk change of an insertion (DESIGN.md 1.5).

From the same trained base, the *expanded* arm inserts the block(s) and trains K steps; the
*control* arm trains the unexpanded base for the same K steps with the same data order,
optimizer settings and seed. The base optimizer state (keyed by parameter name) carries over
into both arms; the new block's parameters join as new parameter groups, told apart from the
existing ones by identity (`id(p)`), never by value. A plain PyTorch loop: both arms are short
and must be exactly comparable.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from scipy import stats

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for
from expansion.insertion.insert import insert_block
from expansion.models.network import PostNormResNet
from expansion.specs import TrainSpec
from expansion.training.trainer import evaluate

logger = logging.getLogger(__name__)

NamedState = dict[str, Any]


@dataclass
class ArmResult:
    """Test risk and error of one arm after K steps."""

    test_risk: float
    test_error: float
    train_loss: float
    """Mean training loss over the K steps."""
    loss_curve: list[list[float]] = field(default_factory=list)
    """[step, mean training loss over the window ending at step]: CURVE_POINTS windows."""


def _clone_state(saved: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    for k, v in saved.items():
        if torch.is_tensor(v):
            v = v.detach().clone()
            # scalar state ("step") stays on the CPU, as the optimizers keep it
            v = v.to(device) if v.dim() else v
        out[k] = v
    return out


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
    existing, new = [], []
    for p in model.parameters():
        (existing if id(p) in base_names else new).append(p)
    groups: list[dict[str, Any]] = []
    for params, role in ((existing, "existing"), (new, "new")):
        decayed = [p for p in params if p.dim() >= 2]
        other = [p for p in params if p.dim() < 2]
        for subset, wd in ((decayed, train.weight_decay), (other, 0.0)):
            if subset:
                groups.append({"params": subset, "weight_decay": wd, "role": role})
    if train.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=lr)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=train.momentum)
    saved = (base_state or {}).get("state", {})
    for p in existing:
        state = saved.get(base_names[id(p)])
        if state:
            opt.state[p] = _clone_state(state, p.device)
    return opt


def train_steps(
    model: PostNormResNet,
    optimizer: torch.optim.Optimizer,
    bundle: DataBundle,
    train: TrainSpec,
    steps: int,
    seed: int,
    on_step: Callable[[], None] | None = None,
    losses: list[float] | None = None,
) -> float:
    """K optimizer steps in train mode; the data order (and augmentation) is a function of seed.

    Returns the mean training loss over the steps; `losses`, when given, receives each step's.
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
) -> ArmResult:
    """One arm: a copy of the base, expanded at `positions` (none = control), trained K steps."""
    model = copy.deepcopy(base)
    base_names = {id(p): n for n, p in model.named_parameters()}  # names in the BASE network
    for p in sorted(positions, reverse=True):  # from the top, so base positions keep meaning
        insert_block(model, p, seed)
    optimizer = build_optimizer(model, train, lr, base_names, base_state)
    losses: list[float] = []
    loss = train_steps(model, optimizer, bundle, train, steps, seed, on_step, losses)
    risk, error = evaluate(model, bundle.x_test, bundle.y_test)
    return ArmResult(
        test_risk=risk, test_error=error, train_loss=loss, loss_curve=window_means(losses)
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
    base: ArmResult | tuple[float, float], expanded: ArmResult, control: ArmResult, steps: int
) -> dict[str, float | int]:
    """The `realized` fields of an insertion record (DESIGN.md 5)."""
    base_risk, base_error = (
        (base.test_risk, base.test_error) if isinstance(base, ArmResult) else base
    )
    return {
        "steps": steps,
        "base_test_risk": base_risk,
        "base_test_error": base_error,
        "expanded_test_risk": expanded.test_risk,
        "expanded_test_error": expanded.test_error,
        "control_test_risk": control.test_risk,
        "control_test_error": control.test_error,
        "gain_vs_control": control.test_risk - expanded.test_risk,
    }


def paired_summary(gains: Sequence[float], confidence: float) -> dict[str, Any]:
    """Mean, std and a paired Student-t interval of per-seed gains (None where n < 2)."""
    n = len(gains)
    mean = sum(gains) / n if n else float("nan")
    if n < 2:
        return {"gain_mean": mean, "gain_std": None, "gain_ci": [None, None]}
    std = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"gain_mean": mean, "gain_std": std, "gain_ci": [mean - half, mean + half]}


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
    curves: dict[str, list[list[float]]] | None = None,
) -> dict[tuple[int, int], dict[str, float | int]]:
    """`realized` records keyed by (position, seed): each expanded arm against its seed's control.

    The control depends on the seed only (same base, data order and settings), so it is
    trained once per seed and shared by every position. `curves`, when given, receives each
    arm's training-loss curve under its label (`control seed 0`, `position 4 seed 0`) before
    `on_arm` is called with that label.
    """
    base_risk, base_error = evaluate(base, bundle.x_test, bundle.y_test)
    records: dict[tuple[int, int], dict[str, float | int]] = {}
    for seed in seeds:
        control = run_arm(
            base,
            base_state,
            bundle,
            train,
            positions=[],
            seed=seed,
            steps=steps,
            lr=lr,
            on_step=on_step,
        )
        if curves is not None:
            curves[f"control seed {seed}"] = control.loss_curve
        if on_arm is not None:
            on_arm(f"control seed {seed}")
        for p in positions:
            expanded = run_arm(
                base,
                base_state,
                bundle,
                train,
                positions=[p],
                seed=seed,
                steps=steps,
                lr=lr,
                on_step=on_step,
            )
            records[(p, seed)] = realized_record((base_risk, base_error), expanded, control, steps)
            if curves is not None:
                curves[f"position {p} seed {seed}"] = expanded.loss_curve
            if on_arm is not None:
                on_arm(f"position {p} seed {seed}")
            logger.info(
                "position %d seed %d: gain vs control %+.5f",
                p,
                seed,
                records[(p, seed)]["gain_vs_control"],
            )
    return records
