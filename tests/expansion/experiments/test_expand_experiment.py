"""A tiny `expand` experiment end to end: every stable field name in every record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from design_fields import DESCENT_FIELDS, JUMPBOARD_FIELDS, REALIZED_FIELDS, RECORD_FIELDS
from recording_reporter import RecordingReporter

from expansion.experiments.expand import run_expand
from expansion.progress import StopRequested
from expansion.results.report import position_table
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec

POSITION_FIELDS = {
    "position",
    "n_seeds",
    "verdict_counts",
    "family_verdict",
    "family_method",
    "seeds_lcb",
    "predicted_val_risk_delta",
    "gain_mean",
    "gain_std",
    "gain_ci",
    "gain_ci_method",
}
CERTIFICATE_FIELDS = {
    "verdict",
    "verdict_reason",
    "certificate_source",
    "certificate_batches",
    "grad_norm_sq_batch_mean",
    "bound_method",
    "numerical_floor",
    "grad_norm_sq_unbiased_train",
    "grad_norm_sq_lcb_train",
    "train_batches",
}
VERDICTS = {"holds", "fails", "undecided"}


def typed(raw: dict) -> ExpandExperiment:
    """`raw` parsed into the typed spec `run_expand` takes."""
    spec = parse_spec(raw)
    assert isinstance(spec, ExpandExperiment)
    return spec


def tiny_spec(**expand) -> dict:
    """An expand spec that runs in seconds on digits."""
    return {
        "kind": "expand",
        "data": {"name": "digits"},
        "model": {"kind": "mlp", "width": 16, "depth": 2},
        "train": {"epochs": 2, "batch_size": 64, "accelerator": "cpu"},
        "expand": {
            "select": "top_k",
            "top_k": 2,
            "seeds": [0, 1],
            "continue_steps": 5,
            "continue_lr": 1e-3,
            "grad_batch_size": 32,
            "line_search_points": 3,
            **expand,
        },
    }


@pytest.fixture(scope="module")
def expand_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, RecordingReporter]:
    out = tmp_path_factory.mktemp("expand")
    reporter = RecordingReporter()
    return run_expand(typed(tiny_spec()), out, reporter), out, reporter


def test_every_record_has_every_field(expand_run) -> None:
    result, out, _ = expand_run
    assert result["kind"] == "expand"
    assert len(result["insertions"]) == 2 * 2  # top 2 positions x 2 seeds
    for rec in result["insertions"]:
        assert set(rec) >= RECORD_FIELDS
        assert set(rec["descent"]) >= DESCENT_FIELDS | CERTIFICATE_FIELDS
        descent = rec["descent"]
        assert descent["verdict"] in VERDICTS
        assert descent["condition_holds"] == (descent["verdict"] == "holds")
        assert descent["certificate_source"] == "holdout"
        assert descent["certificate_batches"] >= 8  # 287 held-out digits / 32
        assert set(rec["jumpboard"]) >= JUMPBOARD_FIELDS
        assert set(rec["realized"]) >= REALIZED_FIELDS
        assert rec["depth_after"] == rec["depth_before"] + 1 == 3
        assert rec["function_drift_eval"] <= 1e-5 and rec["function_drift_train"] <= 1e-5
        assert len(rec["jumpboard"]["test_risk_delta_ci"]) == 2
    for pos in result["positions"]:
        assert set(pos) >= POSITION_FIELDS
        assert pos["n_seeds"] == 2
        assert pos["family_verdict"] in VERDICTS and pos["family_method"] == "holm"
        assert "certified_gain_lcb" not in pos  # a mean of bounds bounds nothing
        assert pos["gain_ci_method"] == "two_level_paired_bootstrap(seeds, test_examples)"
        low, high = pos["gain_ci"]
        assert low <= pos["gain_mean"] <= high
        bounds = [
            r["descent"]["grad_norm_sq_lcb"]
            for r in result["insertions"]
            if r["position"] == pos["position"]
        ]
        assert pos["seeds_lcb"] == pytest.approx(min(bounds))
        counts = pos["verdict_counts"]
        assert sum(counts.values()) == 2
        for rec in result["insertions"]:
            if rec["position"] == pos["position"]:
                assert rec["realized"]["gain_ci_method"] == "paired_bootstrap(test_examples)"
    assert json.loads((out / "result.json").read_text()) == result
    assert (out / "base.ckpt").exists() and result["artifacts"] == ["base.ckpt"]


def test_scan_section_and_top_k_choice(expand_run) -> None:
    result, _, _ = expand_run
    scan = result["scan"]
    assert scan["method"] == "single_pass" and scan["reason"]
    assert [row["position"] for row in scan["positions"]] == [0, 1, 2]
    assert scan["certificate_source"] == "holdout" and scan["family_method"] == "holm"
    for row in scan["positions"]:
        assert row["verdict"] in VERDICTS and row["family_verdict"] in VERDICTS
        assert "grad_norm_sq_lcb" not in row  # only real bounds: per seed, and over seeds
        seeds = row["per_seed"]
        assert row["seeds_lcb"] == pytest.approx(min(s["grad_norm_sq_lcb"] for s in seeds))
        if row["family_verdict"] == "holds":
            assert row["verdict"] == "holds"
        if row["verdict"] == "holds":
            assert all(s["verdict"] == "holds" for s in seeds)

    selection = result["selection"]  # ranked by expand.by (seed means per position)
    assert selection["by"] == result["spec"]["expand"]["by"]
    assert [r["position"] for r in selection["scores"]] == [0, 1, 2]
    ranked = sorted(selection["scores"], key=lambda r: r["score"], reverse=True)
    assert [p["position"] for p in result["positions"]] == sorted(r["position"] for r in ranked[:2])


def test_progress_stages_and_table(expand_run) -> None:
    result, _, reporter = expand_run
    stages = [stage for _, stage, _ in reporter.events]
    for stage in ("train", "scan", "certify", "continue"):
        assert stage in stages
    fractions = [f for f, _, _ in reporter.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    table = position_table(result)
    assert len(table.splitlines()) == 2 + len(result["positions"]) + 1


def test_base_checkpoint_is_reused_and_explicit_positions(expand_run, tmp_path: Path) -> None:
    first, out, _ = expand_run
    spec = tiny_spec(select="explicit", positions=[2], seeds=[0])
    result = run_expand(typed(spec), tmp_path, None, base_checkpoint=out / "base.ckpt")
    assert result["test_risk"] == pytest.approx(first["test_risk"])
    assert [r["position"] for r in result["insertions"]] == [2]
    assert result["timings"]["train_s"] == 0.0


def test_two_gradient_batches_never_hold(expand_run, tmp_path: Path) -> None:
    _, out, _ = expand_run
    spec = tiny_spec(grad_batches=2, select="all", seeds=[0])
    result = run_expand(typed(spec), tmp_path, None, base_checkpoint=out / "base.ckpt")
    verdicts = [r["descent"]["verdict"] for r in result["insertions"]]
    verdicts += [r["verdict_train"] for r in (x["descent"] for x in result["insertions"])]
    for row in result["scan"]["positions"]:
        verdicts += [row["verdict"], row["family_verdict"]]
        verdicts += [s["verdict"] for s in row["per_seed"]]
    assert verdicts and set(verdicts) == {"undecided"}
    assert all(r["descent"]["certificate_batches"] == 2 for r in result["insertions"])


def test_select_certified_continues_exactly_the_family_wise_holds(
    expand_run, tmp_path: Path
) -> None:
    first, out, _ = expand_run
    result = run_expand(
        typed(tiny_spec(select="certified")), tmp_path, None, base_checkpoint=out / "base.ckpt"
    )
    held = [r["position"] for r in result["scan"]["positions"] if r["family_verdict"] == "holds"]
    assert [p["position"] for p in result["positions"]] == held
    assert result["scan"]["positions"] == first["scan"]["positions"]


class StopInScan(RecordingReporter):
    """Asks to stop as soon as the scan stage starts."""

    def should_stop(self) -> bool:
        return any(stage == "scan" for _, stage, _ in self.events)


def test_stop_request_is_honoured(expand_run, tmp_path: Path) -> None:
    _, out, _ = expand_run
    with pytest.raises(StopRequested):
        run_expand(typed(tiny_spec()), tmp_path, StopInScan(), base_checkpoint=out / "base.ckpt")
    assert not (tmp_path / "result.json").exists()


def test_report_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, expansion.results.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_teacher_certificate_uses_fresh_samples(tmp_path: Path) -> None:
    spec = {
        "kind": "expand",
        "data": {"name": "teacher", "teacher_train_size": 256, "teacher_test_size": 128},
        "model": {"kind": "mlp", "width": 8, "depth": 1},
        "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
        "expand": {
            "select": "explicit",
            "positions": [1],
            "seeds": [0],
            "continue_steps": 2,
            "grad_batch_size": 16,
            "grad_batches": 8,
            "line_search_points": 2,
        },
    }
    result = run_expand(typed(spec), tmp_path)
    assert result["scan"]["certificate_source"] == "fresh"
    (record,) = result["insertions"]
    descent = record["descent"]
    assert descent["certificate_source"] == "fresh" and descent["certificate_batches"] == 8
    assert descent["train_batches"] == 8 and descent["verdict"] in VERDICTS
    (position,) = result["positions"]
    assert position["gain_ci_method"] == "paired_bootstrap(test_examples)"  # one seed
