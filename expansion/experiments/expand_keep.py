"""The expanded network an `expand` job keeps (`expanded.ckpt`): the answer's position
(recommended, else the best measured) inserted into the base with the first seed's block and
continued exactly as its arm was, loadable by `jumpboard run --base` with a spec one block
deeper (single-stage networks; a multi-stage one gets the block in one stage only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expansion.data.datasets import DataBundle
from expansion.experiments.expand_base import BaseNetwork
from expansion.models.network import PostNormResNet
from expansion.results.answer import Answer
from expansion.specs.experiments import ExpandExperiment
from expansion.training.continuation import run_arm

EXPANDED_CHECKPOINT = "expanded.ckpt"


def expanded_spec(spec: ExpandExperiment) -> dict[str, Any]:
    """The spec stored with the expanded network: this one with one more block per stage's
    depth where the network has one stage (what `--base` compares it against)."""
    dumped = spec.model_dump(mode="json")
    if spec.model.stages == 1:
        dumped["model"]["depth"] = spec.model.depth + 1
    return dumped


def keep_expanded(
    spec: ExpandExperiment,
    base: BaseNetwork,
    bundle: DataBundle,
    answer: Answer,
    lr: float,
    out_dir: Path,
) -> dict[str, Any] | None:
    """Train the answer's position's arm again (first seed; the same steps, data order and
    settings as in the continuation) and save it as `expanded.ckpt`; the record of what was
    kept, or None when no position was continued."""
    from expansion.models.checkpoint import save_checkpoint

    position = answer["best_position"]
    if position is None:
        return None
    seed = spec.expand.seeds[0]
    kept: list[PostNormResNet] = []
    arm = run_arm(
        base.model,
        base.optimizer_state,
        bundle,
        spec.train,
        positions=[position],
        seed=seed,
        steps=spec.expand.continue_steps,
        lr=lr,
        keep=kept,
    )
    model = kept[0].eval()
    save_checkpoint(
        out_dir / EXPANDED_CHECKPOINT,
        model,
        spec=expanded_spec(spec),
        extra={"final_lr": lr, "position": position, "seed": seed, "from": "expand"},
    )
    return {
        "file": EXPANDED_CHECKPOINT,
        "position": position,
        "seed": seed,
        "recommended": answer["recommended_position"] is not None,
        "test_risk": arm.test_risk,
        "test_error": arm.test_error,
    }
