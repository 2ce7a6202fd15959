"""The job page's answer sentence, verdicts, intervals, drift warnings, stage progress, the grow
section and the compare view, from result dicts in the issue-10 contract shape (no training)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from result_fixtures import EXPAND_SPEC, GROW_SPEC, expand_result, grow_result, older_expand_result
from sqlalchemy.orm import Session, sessionmaker

from app.api.main import create_app
from app.db.models import Job
from app.db.session import forget_engine, session_factory
from app.queue import claim_next_job, complete_job, enqueue_job, heartbeat
from app.settings import Settings
from app.web.calibration import JobCalibration
from app.web.charts import value_tick_format
from app.web.compare import CompareError, parse_job_ids, spec_diff
from app.web.expand_answer_view import format_interval
from app.web.job_view import (
    expand_headline,
    format_timing,
    selection_sentence,
    stage_progress,
)


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    yield session_factory(sqlite_url)
    forget_engine(sqlite_url)


@pytest.fixture
def client(sqlite_url: str, tmp_path: Any) -> Iterator[TestClient]:
    settings = Settings(
        database_url=sqlite_url, artifact_dir=tmp_path / "a", data_dir=tmp_path / "d"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def finished(factory: sessionmaker[Session], spec: dict[str, Any], result: dict[str, Any]) -> int:
    """A job stored the way the worker stores a finished one."""
    with factory() as session:
        job_id = enqueue_job(session, spec).id
    claim = claim_next_job(factory, "test-worker", 600.0)
    assert claim is not None and claim.job_id == job_id
    assert complete_job(factory, claim, result)
    return job_id


def test_expand_headline_states_the_answer_with_its_interval() -> None:
    result = expand_result()
    sentence, note = expand_headline(result, result["positions"])
    assert sentence == (
        "Of the 2 positions continued, inserting at position 4 lowered test risk by 0.012 nats "
        "[0.004, 0.020] against the control over 3 seeds; the certificate held at 1 of 5 "
        "positions (Holm)."
    )
    assert note == ""


def test_headline_says_when_the_interval_includes_zero_and_reads_older_results() -> None:
    result = expand_result()
    rows = [{"position": 1, "n_seeds": 2, "gain_mean": -0.003, "gain_ci": [-0.010, 0.004]}]
    for row in result["scan"]["positions"]:
        del row["certificate"]["family_verdict"]  # no family-wise verdict stored
    sentence, note = expand_headline(result, rows)
    assert "raised test risk by 0.003 nats [-0.004, 0.010]" in sentence
    assert "over 2 seeds" in sentence
    assert "held at 1 of 5 positions (each position on its own" in sentence
    assert "includes 0" in note
    older = older_expand_result()  # before issue 20: no certificate in nats
    sentence, _ = expand_headline(older, rows)
    assert "no certificate in nats (an older result); |E g|^2 > 0 shown at 1 of 5" in sentence
    for row in older["scan"]["positions"]:
        del row["family_verdict"], row["verdict"], row["condition_holds"]
    sentence, _ = expand_headline(older, rows)
    assert "verdict is n/a" in sentence


def test_interval_decimals_follow_the_interval_width() -> None:
    assert format_interval(0.012, [0.004, 0.020]) == ("0.012", "[0.004, 0.020]")
    assert format_interval(0.5, [None, None]) == ("0.5", "[n/a]")
    assert format_interval(None, [0.1, 0.2]) == ("n/a", "")


def test_units_and_tick_formats() -> None:
    assert format_timing("steps_per_s", 144.0) == ("steps rate", "144.0 steps/s")
    assert format_timing("train_s", 12.25) == ("train", "12.2 s")
    # A spread of 0.02 needs 4 decimals; a constant series still gets a finite format.
    assert value_tick_format([0.40, 0.42]) == ".4~f"
    assert value_tick_format([8.8e-18, 1.0]) == ".2~f"
    assert value_tick_format([]) == ".3~f"


def test_stage_progress_estimates_time_left_linearly(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session:
        job = enqueue_job(session, EXPAND_SPEC)
        job.status, job.stage, job.progress = "running", "certify", 0.6
        job.message = "position 2 seed 1"
        job.started_at = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
        progress = stage_progress(job, now=dt.datetime(2026, 1, 1, 12, 1, tzinfo=dt.UTC))
    assert progress is not None
    assert progress.stages == [
        ("train", "done"),
        ("scan", "done"),
        ("certify", "current"),
        ("continue", "pending"),
    ]
    assert progress.elapsed_s == 60.0
    assert progress.remaining_s == pytest.approx(40.0)
    assert progress.step == "position 2 seed 1"


def test_job_page_shows_verdicts_intervals_drift_and_continuation(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    job_id = finished(factory, EXPAND_SPEC, expand_result(drift_at=2))
    html = client.get(f"/jobs/{job_id}").text
    assert "lowered test risk by 0.012 nats [0.004, 0.020]" in html
    assert 'id="drift-warnings"' in html and "position 2:" in html
    assert html.count('class="drift-warning"') == 3  # position 2, three seeds
    assert "verdict-holds" in html and "verdict-undecided" in html
    assert "[0.004, 0.02]" in html  # the per-position interval column
    assert "144.0 steps/s" in html and "steps_per_s" not in html
    assert 'id="continuation-chart"' in html
    assert "Positions given in the spec: no predictor chose them." in html
    clean = finished(factory, EXPAND_SPEC, expand_result(drift_at=None))
    assert 'id="drift-warnings"' not in client.get(f"/jobs/{clean}").text
    top_k = {**EXPAND_SPEC, "expand": {"select": "top_k", "top_k": 2, "by": "grad_rel_w2"}}
    ranked = client.get(f"/jobs/{finished(factory, top_k, expand_result())}").text
    assert (
        'id="headline-selection">Positions chosen by grad_rel_w2; '
        "too few similar jobs to measure its calibration.<" in ranked
    )


def test_selection_sentence_states_the_predictor_and_its_calibration() -> None:
    job = Job(kind="expand", spec={"expand": {"select": "top_k", "by": "grad_rel_w2"}})
    measured = JobCalibration("grad_rel_w2", 12, 0.234, -0.27, 0.69, 0.49, 0.7, 0.031)
    result = {"selection": {"select": "top_k", "by": "grad_rel_w2"}}
    assert selection_sentence(job, result, measured) == (
        "Positions chosen by grad_rel_w2; on 12 similar jobs: Spearman 0.23 [-0.27, 0.69] "
        "(exact p 0.031; gain reliability 0.49, allowing about 0.70)."
    )
    unmeasured = JobCalibration("grad_rel_w2", 1, None, None, None, None)
    assert selection_sentence(job, result, unmeasured).endswith(
        "too few similar jobs to measure its calibration."
    )
    by_result = {"selection": {"select": "top_k", "by": "certificate_u"}}
    assert selection_sentence(job, by_result, measured).startswith(
        "Positions chosen by certificate_u; too few"
    ), "a calibration of another predictor is not reported as this one's"
    assert selection_sentence(Job(kind="train", spec={}), {}, None) == ""


def test_running_job_page_shows_stage_and_partial_curves(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    with factory() as session:
        job_id = enqueue_job(session, EXPAND_SPEC).id
    claim = claim_next_job(factory, "test-worker", 600.0)
    assert claim is not None
    metrics = [(10, "train", "loss", 1.5), (20, "train", "loss", 1.2)]
    metrics += [(50, "continuation", "control seed 0/loss", 0.5)]
    metrics += [(50, "continuation", "position 4 seed 0/loss", 0.48)]
    assert heartbeat(factory, claim, 0.7, "continue", message="120/600 steps", metrics=metrics)
    html = client.get(f"/jobs/{job_id}").text
    assert 'id="stage-progress"' in html and "120/600 steps" in html
    assert 'data-state="current">continue' in html
    assert "position 4 (mean of 1 seed)" in html  # the arm's curve landed while running
    assert "control seed 0/loss" not in html.split('id="loss-chart-spec"')[1].split("</script>")[0]


def test_grow_page_shows_schedule_depth_and_runs(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    job_id = finished(factory, GROW_SPEC, grow_result())
    html = client.get(f"/jobs/{job_id}").text
    assert "Growing from 2 to 4 blocks (best policy, 2 events) reached test risk 0.300" in html
    assert "0.320 for the target depth from scratch and 0.360 for the starting depth" in html
    assert "insert after epochs 1, 2, up to 4 blocks" in html
    assert 'id="depth-chart"' in html and 'id="grow-curves-chart"' in html
    assert html.count("<tr><td>") >= 3  # one row per run


def test_compare_view_diffs_specs_and_lists_answers(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    first = finished(factory, EXPAND_SPEC, expand_result())
    second = finished(
        factory, {**EXPAND_SPEC, "name": "other", "train": {"epochs": 5}}, expand_result()
    )
    page = client.get(f"/compare?jobs={first},{second}")
    assert page.status_code == 200
    html = page.text
    assert html.count("lowered test risk by 0.012 nats") == 2
    assert "<code>train.epochs</code>" in html and 'class="differs"' in html
    bad = client.get(f"/compare?jobs={first},999999")
    assert bad.status_code == 400 and "there is no job 999999" in bad.text
    with pytest.raises(CompareError):
        parse_job_ids("1")
    assert parse_job_ids("3, 1,3") == [3, 1]
    rows = spec_diff([{"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}])
    assert rows == [("a.b", ["1", "2"], True), ("c", ["2", "2"], False)]


def test_compare_accepts_the_job_lists_repeated_checkboxes(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    first = finished(factory, EXPAND_SPEC, expand_result())
    second = finished(factory, GROW_SPEC, grow_result())
    listing = client.get("/jobs").text
    assert 'form="compare-form"' in listing
    page = client.get(f"/compare?jobs={first}&jobs={second}")
    assert page.status_code == 200 and "Growing from 2 to 4 blocks" in page.text
    assert client.get(f"/compare?jobs={first}").status_code == 200  # asks for another id


def test_job_page_and_summary_show_a_tracker_warning(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    warning = "tracker mlflow: MlflowException: cannot reach http://127.0.0.1:9"
    job_id = finished(factory, EXPAND_SPEC, {**expand_result(), "warnings": [warning]})
    html = client.get(f"/jobs/{job_id}").text
    assert 'id="job-warnings"' in html and "cannot reach http://127.0.0.1:9" in html
    summary = client.get(f"/api/v1/jobs/{job_id}").json()["summary"]
    assert summary["warnings"] == [warning]
    clean = finished(factory, EXPAND_SPEC, expand_result())
    assert 'id="job-warnings"' not in client.get(f"/jobs/{clean}").text
