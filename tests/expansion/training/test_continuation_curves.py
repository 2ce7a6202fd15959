"""Continuation records each arm's training-loss curve (the job page draws expanded vs control)."""

from __future__ import annotations

from pathlib import Path

import pytest

from expansion.data.datasets import load_dataset
from expansion.specs.sections import DataSpec, ModelSpec, TrainSpec
from expansion.training.continuation import controlled_continuation, window_means
from expansion.training.trainer import train_model


def test_window_means_average_each_window_and_keep_the_last_step() -> None:
    losses = [float(i) for i in range(10)]
    assert window_means(losses, points=5) == [
        [2.0, 0.5],
        [4.0, 2.5],
        [6.0, 4.5],
        [8.0, 6.5],
        [10.0, 8.5],
    ]
    assert window_means(losses, points=3) == [[4.0, 1.5], [8.0, 5.5], [10.0, 8.5]]
    assert window_means([1.0, 3.0], points=25) == [[1.0, 1.0], [2.0, 3.0]]
    assert window_means([]) == []


class Spec:
    data = DataSpec(name="digits", max_train_samples=300)
    model = ModelSpec(kind="mlp", width=8, depth=1)
    train = TrainSpec(epochs=1, batch_size=64, accelerator="cpu")


def test_every_arm_gets_a_curve_under_its_label_before_on_arm(tmp_path: Path) -> None:
    bundle = load_dataset(Spec.data, "mlp")
    outcome = train_model(Spec(), bundle, None, tmp_path)
    curves: dict[str, list[list[float]]] = {}
    seen: list[tuple[str, int]] = []
    records = controlled_continuation(
        outcome.model.eval(),
        outcome.optimizer_state,
        bundle,
        Spec.train,
        positions=[0, 1],
        seeds=[0],
        steps=6,
        lr=1e-3,
        curves=curves,
        on_arm=lambda label: seen.append((label, len(curves[label]))),
    ).records
    assert set(curves) == {"control seed 0", "position 0 seed 0", "position 1 seed 0"}
    assert [label for label, _ in seen] == [
        "control seed 0",
        "position 0 seed 0",
        "position 1 seed 0",
    ]
    for label, points in curves.items():
        assert [p[0] for p in points] == [float(s) for s in range(1, 7)], label
        assert all(p[1] > 0 for p in points)
    assert set(records) == {(0, 0), (1, 0)}
    # Same data order in both arms, a zero-initialized block: the first step's loss is equal.
    assert curves["position 0 seed 0"][0][1] == pytest.approx(
        curves["control seed 0"][0][1], rel=1e-5
    )
