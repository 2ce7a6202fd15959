"""A job's curves in the trackers a researcher already uses: a shrunk expand job with
`loggers: [csv, tensorboard, mlflow]` against a local MLflow file store and a TensorBoard
folder, read back with MLflow's own client and TensorBoard's event accumulator; a tracker that
is down only adds a warning."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from expansion.experiments.runner import run_experiment
from expansion.training.trackers import arm_tags

SPEC: dict[str, Any] = {
    "kind": "expand",
    "name": "tracked",
    "data": {"name": "digits", "max_train_samples": 300},
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "train": {"epochs": 3, "batch_size": 16, "accelerator": "cpu"},
    "expand": {
        "select": "all",
        "seeds": [0, 1],
        "continue_steps": 3,
        "grad_batch_size": 16,
        "line_search_points": 2,
    },
}
ARMS = {
    "control seed 0",
    "control seed 1",
    "position 0 seed 0",
    "position 0 seed 1",
    "position 1 seed 0",
    "position 1 seed 1",
}


def test_arm_labels_become_tags() -> None:
    assert arm_tags("control seed 3") == {"arm": "control", "seed": "3"}
    assert arm_tags("position 4 seed 0") == {"arm": "position", "position": "4", "seed": "0"}


@pytest.mark.timeout(300)
def test_mlflow_and_tensorboard_hold_the_base_curve_and_every_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "mlruns"
    monkeypatch.setenv("JUMPBOARD_MLFLOW_TRACKING_URI", store.as_uri())
    spec = {**SPEC, "train": {**SPEC["train"], "loggers": ["csv", "tensorboard", "mlflow"]}}
    out = tmp_path / "job"
    result = run_experiment(spec, out)
    assert result["trackers"]["warnings"] == []
    assert "warnings" not in result
    assert set(result["continuation_curves"]) == ARMS

    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("tracked")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"base", *ARMS}
    base_loss = client.get_metric_history(runs["base"].info.run_id, "train/loss")
    assert len(base_loss) == len(result["curves"]["train/loss"]) > 1
    assert runs["base"].data.metrics["final/test_risk"] == pytest.approx(result["test_risk"])
    assert runs["position 1 seed 0"].data.tags["arm"] == "position"
    assert runs["position 1 seed 0"].data.tags["position"] == "1"
    assert runs["control seed 1"].data.tags["seed"] == "1"
    for arm in ARMS:
        history = client.get_metric_history(runs[arm].info.run_id, "continuation/loss")
        assert [m.value for m in history] == pytest.approx(
            [p[1] for p in result["continuation_curves"][arm]]
        )
    gain = runs["position 0 seed 1"].data.metrics["final/gain_vs_control"]
    record = next(r for r in result["insertions"] if (r["position"], r["seed"]) == (0, 1))
    assert gain == pytest.approx(record["realized"]["gain_vs_control"])

    folders = sorted(p.name for p in (out / "tensorboard" / "tracked").iterdir())
    assert folders == sorted(["base", *(a.replace(" ", "-") for a in ARMS)])
    base = EventAccumulator(str(out / "tensorboard" / "tracked" / "base"))
    base.Reload()
    assert len(base.Scalars("train/loss")) == len(result["curves"]["train/loss"])
    arm = EventAccumulator(str(out / "tensorboard" / "tracked" / "position-0-seed-0"))
    arm.Reload()
    assert [e.value for e in arm.Scalars("continuation/loss")] == pytest.approx(
        [p[1] for p in result["continuation_curves"]["position 0 seed 0"]]
    )
    assert "trackers.tar.gz" in result["artifacts"]
    with tarfile.open(out / "trackers.tar.gz") as archive:
        names = archive.getnames()
    assert any(n.startswith("tensorboard/tracked/base/") for n in names)
    assert any(n.startswith("csv/tracked/base/") for n in names)


def test_a_tracker_that_is_down_only_adds_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUMPBOARD_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens
    spec = {
        "kind": "train",
        "name": "down",
        "data": {"name": "digits", "max_train_samples": 200},
        "model": {"kind": "mlp", "width": 8, "depth": 1},
        "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu", "loggers": ["mlflow"]},
    }
    result = run_experiment(spec, tmp_path / "job")
    assert 0.0 < result["test_risk"] < 10.0
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("tracker mlflow:")
