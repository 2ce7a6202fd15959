"""A finished job's curves and numbers, sent to the experiment trackers its spec names
(`train.loggers`) through Lightning's loggers: CSV, TensorBoard, MLflow, and wandb (offline)
where installed.

The service's own store stays the source of truth: this runs after the result exists, from the
result dict alone. The base network is one run and every continuation arm another, tagged
`arm` (base / control / position), `position` and `seed`, so that a tracker overlays the arms.
A tracker that fails (not installed, unreachable) becomes a warning in the result; nothing
fails because of it. Local tracker folders are packed into one artifact, `trackers.tar.gz`.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MLFLOW_URI_VARIABLE = "JUMPBOARD_MLFLOW_TRACKING_URI"
"""Where MLflow runs go; unset: a file store under the job's folder (`mlruns/`)."""

TRACKER_ARCHIVE = "trackers.tar.gz"
"""The job artifact holding the local tracker folders."""

LOCAL_FOLDERS = {"csv": "csv", "tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb"}

_ARM = re.compile(r"^(?:(control)|position (\d+)) seed (\d+)$")


@dataclass
class TrackedRun:
    """One tracker run: a name, its tags, and its metric points (step -> name -> value)."""

    name: str
    tags: dict[str, str]
    points: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def add_curve(self, metric: str, curve: Iterable[Any]) -> None:
        """Add a `[[step, value], ...]` curve under `metric`."""
        for point in curve:
            step, value = int(point[0]), point[1]
            if isinstance(value, int | float):
                self.points[step][metric] = float(value)

    def add_final(self, numbers: dict[str, Any]) -> None:
        """Add numbers at the run's last step (the answer's numbers)."""
        step = max(self.points, default=0)
        for name, value in numbers.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.points[step][name] = float(value)


def arm_tags(label: str) -> dict[str, str]:
    """Tags of a continuation arm from its label (`control seed 0`, `position 4 seed 1`)."""
    match = _ARM.match(label)
    if match is None:
        return {"arm": label}
    control, position, seed = match.groups()
    tags = {"arm": "control" if control else "position", "seed": seed}
    if position is not None:
        tags["position"] = position
    return tags


def tracked_runs(result: dict[str, Any]) -> list[TrackedRun]:
    """The base run and one run per continuation arm, from a result dict."""
    spec = result.get("spec") or {}
    kind = str(result.get("kind", ""))
    base = TrackedRun(
        "base", {"arm": "base", "kind": kind, "data": str(spec.get("data", {}).get("name", ""))}
    )
    for name, curve in (result.get("curves") or {}).items():
        base.add_curve(name, curve)
    base.add_final(
        {
            f"final/{k}": result.get(k)
            for k in (
                "test_risk",
                "test_error",
                "val_risk",
                "val_error",
                "train_risk",
                "parameters",
            )
        }
    )
    for position in result.get("positions") or []:
        p = position.get("position")
        certificate = position.get("certificate") or {}
        base.add_final(
            {
                f"position_{p}/certificate_risk_decrease": certificate.get("risk_decrease"),
                f"position_{p}/gain_mean": position.get("gain_mean"),
                f"position_{p}/predicted_val_risk_delta": position.get("predicted_val_risk_delta"),
            }
        )
    runs = [base]
    arms: dict[str, TrackedRun] = {}
    for label, curve in (result.get("continuation_curves") or {}).items():
        run = TrackedRun(label, {**arm_tags(label), "kind": kind})
        run.add_curve("continuation/loss", curve)
        arms[label] = run
        runs.append(run)
    for record in result.get("insertions") or []:
        realized = record.get("realized") or {}
        seed = record.get("seed")
        arm = arms.get(f"position {record.get('position')} seed {seed}")
        if arm is not None:
            arm.add_final(
                {
                    "final/test_risk": realized.get("expanded_test_risk"),
                    "final/test_error": realized.get("expanded_test_error"),
                    "final/gain_vs_control": realized.get("gain_vs_control"),
                    "final/certificate_risk_decrease": (record.get("certificate") or {}).get(
                        "risk_decrease"
                    ),
                }
            )
        control = arms.get(f"control seed {seed}")
        if control is not None:
            control.add_final(
                {
                    "final/test_risk": realized.get("control_test_risk"),
                    "final/test_error": realized.get("control_test_error"),
                }
            )
    return runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _make_logger(tracker: str, run: TrackedRun, group: str, out_dir: Path) -> Any:
    """The Lightning logger of one run in one tracker."""
    from lightning.pytorch import loggers

    if tracker == "csv":
        return loggers.CSVLogger(out_dir / "csv", name=_slug(group), version=_slug(run.name))
    if tracker == "tensorboard":
        return loggers.TensorBoardLogger(
            out_dir / "tensorboard",
            name=_slug(group),
            version=_slug(run.name),
            default_hp_metric=False,
        )
    if tracker == "mlflow":
        uri = (
            os.environ.get(MLFLOW_URI_VARIABLE, "").strip()
            or (out_dir / "mlruns").resolve().as_uri()
        )
        # An unreachable server must cost seconds, not minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; a job's own folder (or the one
            # configured) is exactly where the researcher asked for it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return loggers.MLFlowLogger(
            experiment_name=group,
            run_name=run.name,
            tracking_uri=uri,
            tags={**run.tags, "jumpboard.group": group},
        )
    if tracker == "wandb":
        return loggers.WandbLogger(
            name=f"{group} {run.name}",
            group=group,
            tags=[f"{k}:{v}" for k, v in run.tags.items()],
            save_dir=str(out_dir),
            offline=True,
        )
    raise ValueError(f"unknown tracker {tracker!r}")


def _send(tracker: str, run: TrackedRun, group: str, out_dir: Path, params: dict[str, Any]) -> None:
    logger = _make_logger(tracker, run, group, out_dir)
    logger.log_hyperparams({**params, "tags": run.tags})
    for step in sorted(run.points):
        logger.log_metrics(dict(run.points[step]), step=step)
    logger.finalize("success")


def publish(
    trackers: list[str], result: dict[str, Any], out_dir: Path, group: str
) -> dict[str, Any]:
    """Send the result's runs to every tracker; returns `{"loggers", "runs", "warnings"}` and
    packs the local tracker folders into `out_dir/trackers.tar.gz`."""
    runs = tracked_runs(result)
    params = dict(result.get("spec") or {})
    warnings: list[str] = []
    for tracker in trackers:
        try:
            for run in runs:
                _send(tracker, run, group, out_dir, params)
        except Exception as exc:  # a tracker never fails the job: it becomes a warning
            message = f"tracker {tracker}: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s", message)
            warnings.append(message)
    folders = [
        out_dir / LOCAL_FOLDERS[t] for t in trackers if (out_dir / LOCAL_FOLDERS[t]).is_dir()
    ]
    packed = False
    if folders:
        try:
            with tarfile.open(out_dir / TRACKER_ARCHIVE, "w:gz") as archive:
                for folder in folders:
                    archive.add(folder, arcname=folder.name)
            packed = True
        except OSError as exc:
            warnings.append(f"trackers: could not pack {TRACKER_ARCHIVE}: {exc}")
    return {
        "loggers": list(trackers),
        "runs": [run.name for run in runs],
        "warnings": warnings,
        "artifact": TRACKER_ARCHIVE if packed else None,
    }
