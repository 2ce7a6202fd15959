"""Continuation arms of one architecture trained together (issue 16).

The arms of a controlled continuation (`expansion.training.continuation`) that share an
architecture (the controls over seeds; the expanded arms over seeds, and over positions
where inserting at either gives the same parameter shapes) train as one stacked model:
every parameter gets a leading arm dimension, the forward pass is `torch.vmap` over
`torch.func.functional_call` of one template network, and the optimizer update runs on the
stacked tensors. Each arm keeps what the one-by-one path gives it: its own seed-determined
data order and augmentation (its own `DeviceBatches`), its own optimizer state (the base
state by parameter name, fresh state for new blocks, per-arm step counts), the same
weight-decay rule (`expansion.training.optim.is_decayed`) and the same constant learning
rate. Results agree with `run_arm` up to float rounding (a grouped convolution sums in
another order); `tests/expansion/training/test_batched_arms.py` checks that.

Plain PyTorch: no Lightning. Networks with batch norm (running statistics updated in train
mode) are not supported; `supports_batching` tells.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for
from expansion.insertion.insert import insert_block
from expansion.models.network import PostNormResNet
from expansion.specs.sections import TrainSpec
from expansion.training.optim import is_decayed

logger = logging.getLogger(__name__)

NamedState = dict[str, Any]
EVAL_SAMPLES = 2048
"""Samples per evaluation chunk, as the one-by-one path's `EVAL_CHUNK` (every arm runs it)."""
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""torch.optim.AdamW's defaults, which the one-by-one path (`build_optimizer`) uses."""


@dataclass(frozen=True)
class ArmPlan:
    """One arm: blocks inserted at `positions` (none = control), data order and W1 from `seed`."""

    positions: tuple[int, ...]
    seed: int


@dataclass
class TrainedArm:
    """What one arm of a batched run measured (`ArmResult`'s fields, built by the caller)."""

    test_losses: np.ndarray
    """Per-example test cross-entropy (float64), in test-set order."""
    test_error: float
    step_losses: list[float]
    early_val_risk: dict[int, float]
    parameters: dict[str, torch.Tensor]
    """The arm's final parameters by name in its (expanded) network (views, no copies)."""


def supports_batching(model: nn.Module) -> bool:
    """Whether arms of `model` can train stacked: no batch norm (its running statistics are
    written in the forward pass, which a stacked functional call does not carry)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def expanded_arm(base: PostNormResNet, plan: ArmPlan) -> tuple[PostNormResNet, dict[int, str]]:
    """A copy of `base` with `plan`'s blocks inserted, and its parameters' names in the base
    (by id; new blocks' parameters are absent)."""
    model = copy.deepcopy(base)
    base_names = {id(p): n for n, p in model.named_parameters()}
    for p in sorted(plan.positions, reverse=True):  # from the top: base positions keep meaning
        insert_block(model, p, plan.seed)
    return model, base_names


def _signature(model: nn.Module) -> tuple[Any, ...]:
    """What must agree for two arms to stack: parameter and buffer names, shapes and types,
    and the module types in order."""
    return (
        tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()),
        tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers()),
        tuple(type(m).__name__ for m in model.modules()),
    )


def group_arms(models: Sequence[nn.Module]) -> list[list[int]]:
    """Indices of `models` grouped by architecture (stackable together), in first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, model in enumerate(models):
        groups.setdefault(_signature(model), []).append(i)
    return list(groups.values())


def _stream(batches: DeviceBatches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches epoch after epoch, as `train_steps` draws them."""
    while True:
        yield from batches


class StackedOptimizer:
    """AdamW or SGD (momentum) over stacked parameters, one state per arm and parameter.

    The update is torch.optim's single-tensor algorithm applied to every arm at once; the
    only per-arm scalar is AdamW's step count (bias correction), since a new block's
    parameters start at step 0 while the base's carry the base's count.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        train: TrainSpec,
        lr: float,
        states: Sequence[dict[str, dict[str, Any] | None]],
    ) -> None:
        self.params, self.train, self.lr = params, train, lr
        self.kind = train.optimizer
        arms = len(states)
        self.decay = {n: train.weight_decay if is_decayed(p[0]) else 0.0 for n, p in params.items()}
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
        self.counter_of: dict[str, tuple[float, ...]] = {}
        """Per parameter its arms' starting step counts: parameters with the same ones share a
        counter, so the per-arm bias corrections are computed (and moved) once per step."""
        self.momentum: dict[str, torch.Tensor] = {}
        for name, p in params.items():
            saved = [s.get(name) for s in states]
            if self.kind == "adamw":
                self.exp_avg[name] = _stacked_state(saved, "exp_avg", p)
                self.exp_avg_sq[name] = _stacked_state(saved, "exp_avg_sq", p)
                self.counter_of[name] = tuple(float((s or {}).get("step", 0.0)) for s in saved)
            else:
                # A missing buffer starts at zero: 0 * momentum + grad is the first step's
                # `buf = grad` of torch.optim.SGD, exactly.
                self.momentum[name] = _stacked_state(saved, "momentum_buffer", p)
        self.counters = {
            start: torch.tensor(start, dtype=torch.float64) for start in self.counter_of.values()
        }
        self.arms = arms

    @torch.no_grad()
    def step(self) -> None:
        """One update of every arm from the stacked gradients."""
        factors: dict[tuple[float, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        if self.kind == "adamw" and self.params:
            like = next(iter(self.params.values()))
            beta1, beta2 = ADAM_BETAS
            for start, steps in self.counters.items():
                steps += 1
                # In float64 as torch.optim computes them (Python floats), then in the
                # parameters' dtype as the update applies them.
                step_size = self.lr / (1 - beta1**steps)
                bias_correction2_sqrt = (1 - beta2**steps) ** 0.5
                both = torch.stack([-step_size, bias_correction2_sqrt])
                moved = both.to(device=like.device, dtype=like.dtype)
                factors[start] = (moved[0], moved[1])
        for name, p in self.params.items():
            grad = p.grad
            if grad is None:
                continue
            wd = self.decay[name]
            if self.kind == "adamw":
                neg_step_size, bias_correction2_sqrt = factors[self.counter_of[name]]
                self._adamw(name, p, grad, wd, neg_step_size, bias_correction2_sqrt)
            else:
                self._sgd(name, p, grad, wd)

    def _arm_view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.reshape(self.arms, *([1] * (like.dim() - 1)))

    def _adamw(
        self,
        name: str,
        p: torch.Tensor,
        grad: torch.Tensor,
        wd: float,
        neg_step_size: torch.Tensor,
        bias_correction2_sqrt: torch.Tensor,
    ) -> None:
        beta1, beta2 = ADAM_BETAS
        if wd != 0:
            p.mul_(1 - self.lr * wd)
        exp_avg, exp_avg_sq = self.exp_avg[name], self.exp_avg_sq[name]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / self._arm_view(bias_correction2_sqrt, p)).add_(ADAM_EPS)
        p.addcdiv_(exp_avg * self._arm_view(neg_step_size, p), denom)

    def _sgd(self, name: str, p: torch.Tensor, grad: torch.Tensor, wd: float) -> None:
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        if self.train.momentum != 0:
            buf = self.momentum[name]
            buf.mul_(self.train.momentum).add_(grad)
            grad = buf
        p.add_(grad, alpha=-self.lr)


def _stacked_state(
    saved: Sequence[dict[str, Any] | None], key: str, like: torch.Tensor
) -> torch.Tensor:
    """Per arm the saved tensor `key` (zeros where an arm has none), stacked like `like`."""
    rows = []
    for s in saved:
        value = (s or {}).get(key)
        if torch.is_tensor(value):
            rows.append(value.detach().to(device=like.device, dtype=like.dtype))
        else:
            rows.append(torch.zeros(like.shape[1:], device=like.device, dtype=like.dtype))
    return torch.stack(rows)


class ArmStack:
    """Arms of one architecture as stacked parameters and buffers over one template network."""

    def __init__(self, models: Sequence[PostNormResNet]) -> None:
        self.template = copy.deepcopy(models[0])
        self.arms = len(models)
        names = [n for n, _ in models[0].named_parameters()]
        with torch.no_grad():
            self.params: dict[str, torch.Tensor] = {
                n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
                .clone()
                .requires_grad_(True)
                for n in names
            }
            self.buffers: dict[str, torch.Tensor] = {
                n: torch.stack([dict(m.named_buffers())[n] for m in models]).clone()
                for n, _ in models[0].named_buffers()
            }

    def _call(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        logits: torch.Tensor = functional_call(self.template, (params, buffers), (x,))
        return logits

    def logits(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """(arms, n, classes): each arm's logits on its own batch (`x` is (arms, n, ...)) or,
        with `shared`, all arms on the same inputs (`x` is (n, ...))."""
        in_dims = (0, 0, None if shared else 0)
        return torch.vmap(self._call, in_dims=in_dims)(self.params, self.buffers, x)

    @torch.no_grad()
    def per_example_losses(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[int]]:
        """(per-arm per-example cross-entropy (arms, n) in float64, per-arm wrong counts)."""
        self.template.eval()
        losses, wrong = [], torch.zeros(self.arms, dtype=torch.long)
        for bx, by in zip(torch.split(x, EVAL_SAMPLES), torch.split(y, EVAL_SAMPLES), strict=True):
            logits = self.logits(bx, shared=True).float()  # (arms, n, classes)
            ce = F.cross_entropy(
                logits.flatten(0, 1), by.repeat(self.arms), reduction="none"
            ).reshape(self.arms, -1)
            losses.append(ce.double().cpu())
            wrong += (logits.argmax(dim=2) != by).sum(dim=1).cpu()
        self.template.train()
        return torch.cat(losses, dim=1), [int(w) for w in wrong]


def train_arm_group(
    models: Sequence[PostNormResNet],
    base_names: Sequence[dict[int, str]],
    seeds: Sequence[int],
    base_state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    *,
    steps: int,
    lr: float,
    on_step: Callable[[], None] | None = None,
    early_steps: Sequence[int] = (),
    early_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[TrainedArm]:
    """Train `models` (one architecture, already expanded) together for `steps` steps.

    Arm i draws its batches with `seeds[i]` and starts from the base optimizer state of its
    parameters' base names (`base_names[i]`: id -> name; absent = fresh state). `on_step`
    runs once per arm and step, as in the one-by-one path.
    """
    stack = ArmStack(models)
    saved = (base_state or {}).get("state", {})
    states = []
    for model, names in zip(models, base_names, strict=True):
        states.append(
            {
                n: saved.get(names[id(p)]) if id(p) in names else None
                for n, p in model.named_parameters()
            }
        )
    optimizer = StackedOptimizer(stack.params, train, lr, states)
    augment = augmentation_for(bundle.name) if bundle.augment else None
    streams = [
        _stream(
            DeviceBatches(bundle.x_train, bundle.y_train, train.batch_size, seed=s, augment=augment)
        )
        for s in seeds
    ]
    wanted = set(early_steps) if early_data is not None else set()
    early: list[dict[int, float]] = [{} for _ in models]
    step_losses: list[list[float]] = [[] for _ in models]
    arms = len(models)

    def arm_loss(
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor:
        logits = functional_call(stack.template, (params, buffers), (x,))
        return F.cross_entropy(logits, y, label_smoothing=train.label_smoothing)

    batched_loss = torch.vmap(arm_loss)
    stack.template.train()
    for done in range(1, steps + 1):
        drawn = [next(s) for s in streams]
        x = torch.stack([b[0] for b in drawn])
        y = torch.stack([b[1] for b in drawn])
        losses = batched_loss(stack.params, stack.buffers, x, y)
        for p in stack.params.values():
            p.grad = None
        losses.sum().backward()  # arms are independent: each gets its own loss's gradient
        optimizer.step()
        for i, value in enumerate(losses.detach().tolist()):
            step_losses[i].append(float(value))
        if on_step is not None:
            for _ in range(arms):
                on_step()
        if done in wanted and early_data is not None:
            val_losses, _ = stack.per_example_losses(*early_data)
            for i in range(arms):
                early[i][done] = float(val_losses[i].sum()) / max(1, len(early_data[1]))
    test_losses, wrong = stack.per_example_losses(bundle.x_test, bundle.y_test)
    n_test = max(1, len(bundle.y_test))
    return [
        TrainedArm(
            test_losses=test_losses[i].numpy(),
            test_error=wrong[i] / n_test,
            step_losses=step_losses[i],
            early_val_risk=early[i],
            parameters={n: p[i].detach() for n, p in stack.params.items()},
        )
        for i in range(arms)
    ]


def train_arms(
    base: PostNormResNet,
    base_state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    plans: Sequence[ArmPlan],
    *,
    steps: int,
    lr: float,
    on_step: Callable[[], None] | None = None,
    on_group: Callable[[list[int], list[TrainedArm]], None] | None = None,
    early_steps: Sequence[int] = (),
    early_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[TrainedArm]:
    """Every arm of `plans` trained `steps` steps, arms of one architecture together; results
    in `plans` order. `on_group(indices, arms)` runs after each group with its plans' indices
    and their results."""
    built = [expanded_arm(base, plan) for plan in plans]
    models = [m for m, _ in built]
    if not all(supports_batching(m) for m in models):
        raise ValueError("batched arms need a network without batch norm")
    results: list[TrainedArm | None] = [None] * len(plans)
    for group in group_arms(models):
        logger.info("training %d arms together (%s)", len(group), [plans[i] for i in group])
        trained = train_arm_group(
            [models[i] for i in group],
            [built[i][1] for i in group],
            [plans[i].seed for i in group],
            base_state,
            bundle,
            train,
            steps=steps,
            lr=lr,
            on_step=on_step,
            early_steps=early_steps,
            early_data=early_data,
        )
        for i, arm in zip(group, trained, strict=True):
            results[i] = arm
        if on_group is not None:
            on_group(group, trained)
    return [r for r in results if r is not None]


def batching_chosen(setting: str, device: torch.device, base: nn.Module) -> bool:
    """Whether the continuation trains arms together under `expand.batch_arms` = `setting`:
    `on`, `off`, or `auto` = on a CUDA device where the network allows it (on the CPU the
    stacked step was measured no faster: docs/benchmarks.md, "Expand job stages")."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return device.type == "cuda" and supports_batching(base)
