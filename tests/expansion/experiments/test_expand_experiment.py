"""A tiny `expand` experiment end to end: every stable field name in every record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from design_fields import (
    CERTIFICATE_FIELDS,
    DESCENT_FIELDS,
    JUMPBOARD_FIELDS,
    REALIZED_FIELDS,
    RECORD_FIELDS,
)
from recording_reporter import RecordingReporter

from expansion.experiments.expand import run_expand
from expansion.progress import StopRequested
from expansion.results.report import position_table
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec

POSITION_FIELDS = {
    "position",
    "n_seeds",
    "certificate",
    "nonzero_gradient",
    "nonzero_gradient_counts",
    "nonzero_gradient_family",
    "nonzero_gradient_p_value",
    "family_method",
    "seeds_test_limit",
    "grad_norm_sq_unbiased",
    "predicted_val_risk_delta",
    "gain_mean",
    "gain_std",
    "gain_ci",
    "gain_ci_method",
}
POSITION_CERTIFICATE_FIELDS = {
    "risk_decrease",
    "risk_decrease_ci",
    "interval_method",
    "p_value",
    "verdict",
    "verdict_counts",
    "family_verdict",
    "min_effect",
    "examples",
}
GRADIENT_TEST_FIELDS = {
    "nonzero_gradient_reason",
    "certificate_source",
    "certificate_batches",
    "grad_norm_sq_batch_mean",
    "nonzero_gradient_method",
    "numerical_floor",
    "grad_norm_sq_unbiased_train",
    "grad_norm_sq_test_limit_train",
    "train_batches",
    "nonzero_gradient_train",
}
VERDICTS = {"holds", "fails", "undecided"}
OUTCOMES = {"shown", "not_shown"}
OLD_NAMES = {"verdict", "condition_holds", "grad_norm_sq_lcb", "certified_gain", "seeds_lcb"}


ExpandRun = tuple[dict[str, Any], Path, RecordingReporter]
"""(result, output folder, reporter) of the module's shared run."""


def typed(raw: dict[str, Any]) -> ExpandExperiment:
    """`raw` parsed into the typed spec `run_expand` takes."""
    spec = parse_spec(raw)
    assert isinstance(spec, ExpandExperiment)
    return spec


def tiny_spec(**expand: Any) -> dict[str, Any]:
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
def expand_run(tmp_path_factory: pytest.TempPathFactory) -> ExpandRun:
    out = tmp_path_factory.mktemp("expand")
    reporter = RecordingReporter()
    return run_expand(typed(tiny_spec()), out, reporter), out, reporter


def test_every_record_has_every_field(expand_run: ExpandRun) -> None:
    result, out, _ = expand_run
    assert result["kind"] == "expand"
    assert len(result["insertions"]) == 2 * 2  # top 2 positions x 2 seeds
    for rec in result["insertions"]:
        assert set(rec) >= RECORD_FIELDS
        assert set(rec["descent"]) >= DESCENT_FIELDS | GRADIENT_TEST_FIELDS
        assert not OLD_NAMES & set(rec["descent"])
        descent = rec["descent"]
        assert descent["nonzero_gradient"] in OUTCOMES
        assert descent["certificate_source"] == "holdout"
        assert descent["certificate_batches"] >= 8  # 287 held-out digits / 32
        certificate = rec["certificate"]
        assert set(certificate) >= CERTIFICATE_FIELDS
        assert certificate["examples"] == 287 and certificate["source"] == "holdout"
        assert certificate["verdict"] in VERDICTS and certificate["min_effect"] == 0.0
        low, high = certificate["risk_decrease_ci"]
        assert low <= certificate["risk_decrease"] <= high
        assert set(rec["jumpboard"]) >= JUMPBOARD_FIELDS
        assert set(rec["realized"]) >= REALIZED_FIELDS
        assert rec["depth_after"] == rec["depth_before"] + 1 == 3
        assert rec["function_drift_eval"] <= 1e-5 and rec["function_drift_train"] <= 1e-5
        assert len(rec["jumpboard"]["test_risk_delta_ci"]) == 2
    for pos in result["positions"]:
        assert set(pos) >= POSITION_FIELDS and not OLD_NAMES & set(pos)
        assert pos["n_seeds"] == 2
        cert = pos["certificate"]
        assert set(cert) >= POSITION_CERTIFICATE_FIELDS
        assert cert["family_verdict"] in VERDICTS and pos["family_method"] == "holm"
        assert pos["nonzero_gradient_family"] in OUTCOMES
        assert pos["gain_ci_method"] == "crossed_random_effects_t(seeds, test_examples)"
        low, high = pos["gain_ci"]
        assert low <= pos["gain_mean"] <= high
        records = [r for r in result["insertions"] if r["position"] == pos["position"]]
        limits = [r["descent"]["grad_norm_sq_test_limit"] for r in records]
        assert pos["seeds_test_limit"] == pytest.approx(min(limits))
        # the position's estimate is the seeds' mean: the same certificate examples for each
        decreases = [r["certificate"]["risk_decrease"] for r in records]
        assert cert["risk_decrease"] == pytest.approx(sum(decreases) / len(decreases))
        assert sum(cert["verdict_counts"].values()) == 2
        assert sum(pos["nonzero_gradient_counts"].values()) == 2
        for rec in records:
            assert rec["realized"]["gain_ci_method"] == "test_examples_only(one seed)"
    assert json.loads((out / "result.json").read_text()) == result
    assert (out / "base.ckpt").exists() and result["artifacts"] == ["base.ckpt", "expanded.ckpt"]
    assert (out / "expanded.ckpt").exists()


def test_scan_section_and_top_k_choice(expand_run: ExpandRun) -> None:
    result, _, _ = expand_run
    scan = result["scan"]
    assert scan["method"] == "single_pass" and scan["reason"]
    assert [row["position"] for row in scan["positions"]] == [0, 1, 2]
    assert scan["certificate_source"] == "holdout" and scan["family_method"] == "holm"
    assert scan["certificate_examples"] == 287 and scan["min_effect"] == 0.0
    for row in scan["positions"]:
        cert = row["certificate"]
        assert cert["verdict"] in VERDICTS and cert["family_verdict"] in VERDICTS
        assert row["nonzero_gradient"] in OUTCOMES and not OLD_NAMES & set(row)
        seeds = row["per_seed"]
        limits = [s["grad_norm_sq_test_limit"] for s in seeds]
        assert row["seeds_test_limit"] == pytest.approx(min(limits))
        if cert["family_verdict"] != "undecided":
            assert cert["verdict"] == cert["family_verdict"]
        if row["nonzero_gradient"] == "shown":
            assert all(s["nonzero_gradient"] == "shown" for s in seeds)

    selection = result["selection"]  # ranked by expand.by (seed means per position)
    assert selection["by"] == result["spec"]["expand"]["by"]
    assert [r["position"] for r in selection["scores"]] == [0, 1, 2]
    ranked = sorted(selection["scores"], key=lambda r: r["score"], reverse=True)
    assert [p["position"] for p in result["positions"]] == sorted(r["position"] for r in ranked[:2])


def test_progress_stages_and_table(expand_run: ExpandRun) -> None:
    result, _, reporter = expand_run
    stages = [stage for _, stage, _ in reporter.events]
    for stage in ("train", "scan", "certify", "continue"):
        assert stage in stages
    fractions = [f for f, _, _ in reporter.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    table = position_table(result)
    assert len(table.splitlines()) == 2 + len(result["positions"]) + 1


def test_base_checkpoint_is_reused_and_explicit_positions(
    expand_run: ExpandRun, tmp_path: Path
) -> None:
    first, out, _ = expand_run
    spec = tiny_spec(select="explicit", positions=[2], seeds=[0])
    result = run_expand(typed(spec), tmp_path, None, base_checkpoint=out / "base.ckpt")
    assert result["test_risk"] == pytest.approx(first["test_risk"])
    assert [r["position"] for r in result["insertions"]] == [2]
    assert result["timings"]["train_s"] == 0.0


def test_two_gradient_batches_show_nothing(expand_run: ExpandRun, tmp_path: Path) -> None:
    _, out, _ = expand_run
    spec = tiny_spec(grad_batches=2, select="all", seeds=[0])
    result = run_expand(typed(spec), tmp_path, None, base_checkpoint=out / "base.ckpt")
    outcomes = [r["descent"]["nonzero_gradient"] for r in result["insertions"]]
    outcomes += [r["nonzero_gradient_train"] for r in (x["descent"] for x in result["insertions"])]
    for row in result["scan"]["positions"]:
        outcomes += [row["nonzero_gradient"], row["nonzero_gradient_family"]]
        outcomes += [s["nonzero_gradient"] for s in row["per_seed"]]
    assert outcomes and set(outcomes) == {"not_shown"}
    assert all(r["descent"]["certificate_batches"] == 2 for r in result["insertions"])
    # the certificate in nats does not depend on the gradient batches: every example counts
    assert all(r["certificate"]["examples"] == 287 for r in result["insertions"])


def test_select_certified_continues_exactly_the_family_wise_holds(
    expand_run: ExpandRun, tmp_path: Path
) -> None:
    first, out, _ = expand_run
    result = run_expand(
        typed(tiny_spec(select="certified")), tmp_path, None, base_checkpoint=out / "base.ckpt"
    )
    held = [
        r["position"]
        for r in result["scan"]["positions"]
        if r["certificate"]["family_verdict"] == "holds"
    ]
    assert [p["position"] for p in result["positions"]] == held
    assert result["scan"]["positions"] == first["scan"]["positions"]


class StopInScan(RecordingReporter):
    """Asks to stop as soon as the scan stage starts."""

    def should_stop(self) -> bool:
        return any(stage == "scan" for _, stage, _ in self.events)


def test_stop_request_is_honoured(expand_run: ExpandRun, tmp_path: Path) -> None:
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
    assert descent["train_batches"] == 8 and descent["nonzero_gradient"] in OUTCOMES
    assert record["certificate"]["source"] == "fresh"
    assert record["certificate"]["examples"] == 8 * 16  # every fresh certificate sample
    (position,) = result["positions"]
    assert position["gain_ci_method"] == "test_examples_only(one seed)"
