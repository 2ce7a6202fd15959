"""Predictor calibration over stored jobs: the API, the CSV, the results page, the job helper.

Jobs reach the database through the queue's own functions with results whose predictors are
built so that the right answer is known: GOOD ranks each job's positions exactly as the realized
gain does, REVERSED exactly backwards, UNMEASURED is unmeasured (three of the stored predictors,
whatever they are named).
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.api.main import create_app
from app.db.models import Insertion, Job
from app.db.session import session_factory
from app.queue import claim_next_job, complete_job, enqueue_job
from app.settings import Settings
from app.web.calibration import calibration_for_job
from expansion.results.calibration import BASELINE_NAMES, Baseline
from expansion.specs.predictor_names import PREDICTOR_NAMES, SELECTABLE_PREDICTORS

POSITIONS = [0, 1, 2, 3, 4]
SEEDS = [0, 1, 2, 3]
GOOD, REVERSED, UNMEASURED = (
    SELECTABLE_PREDICTORS[0],
    SELECTABLE_PREDICTORS[-1],
    PREDICTOR_NAMES[-1],
)


def expand_spec(dataset: str, norm: str) -> dict[str, Any]:
    """An expand spec of a given configuration (never run: the result is made up)."""
    return {
        "kind": "expand",
        "name": f"cal-{dataset}-{norm}",
        "data": {"name": dataset},
        "model": {"kind": "mlp", "width": 16, "depth": 4, "norm": norm},
        "train": {"epochs": 1},
        "expand": {"select": "all", "by": GOOD, "seeds": SEEDS, "continue_steps": 5},
    }


def made_up_result(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Insertions whose gain grows with the position, plus seed noise far below the spread."""
    records = []
    for p in POSITIONS:
        for s in SEEDS:
            gain = 0.01 * p + rng.gauss(0.0, 1e-4)
            predictors: dict[str, float | None] = {name: rng.random() for name in PREDICTOR_NAMES}
            predictors[GOOD] = 10.0 ** (p - 6)  # same order as the gain, 5 decades
            predictors[REVERSED] = -float(p)  # exactly reversed
            predictors[UNMEASURED] = None
            records.append(
                {
                    "position": p,
                    "seed": s,
                    "descent": {"grad_norm_sq_unbiased": predictors[GOOD]},
                    "realized": {"gain_vs_control": gain},
                    "predictors": predictors,
                }
            )
    return {"kind": "expand", "spec": spec, "insertions": records, "positions": []}


def finished_job(
    factory: sessionmaker[Session], tmp_path: Path, spec: dict[str, Any], seed: int
) -> int:
    """Queue, claim and complete an expand job the way the worker does."""
    with factory() as session:
        job_id = enqueue_job(session, spec).id
    claim = claim_next_job(factory, "calibration-test-worker", 60.0)
    assert claim is not None and claim.job_id == job_id
    job_dir = tmp_path / "artifacts" / str(job_id)
    job_dir.mkdir(parents=True)
    assert complete_job(factory, claim, made_up_result(spec, random.Random(seed)), job_dir=job_dir)
    return job_id


@pytest.fixture
def factory(db_url: str) -> sessionmaker[Session]:
    """A session factory on a fresh migrated database."""
    return session_factory(db_url)


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The whole app over the fresh database."""
    settings = Settings(
        database_url=db_url, artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def three_jobs(factory: sessionmaker[Session], tmp_path: Path) -> list[int]:
    """Two digits jobs (layer, rms) and one teacher job."""
    specs = [expand_spec("digits", "layer"), expand_spec("digits", "rms")]
    specs.append(expand_spec("teacher", "layer"))
    return [finished_job(factory, tmp_path, spec, i) for i, spec in enumerate(specs)]


def test_insertion_rows_store_the_predictors(
    factory: sessionmaker[Session], three_jobs: list[int]
) -> None:
    with factory() as session:
        rows = session.scalars(select(Insertion).where(Insertion.job_id == three_jobs[0])).all()
    assert len(rows) == len(POSITIONS) * len(SEEDS)
    for row in rows:
        stored = row.predictors or {}
        assert set(stored) == set(PREDICTOR_NAMES)
        assert stored[REVERSED] == -row.position
        assert stored[UNMEASURED] is None


def test_calibration_by_dataset_has_a_row_per_group_and_predictor(
    client: TestClient, three_jobs: list[int]
) -> None:
    answer = client.get("/api/v1/calibration", params={"group_by": "dataset", "resamples": 200})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["group_by"] == ["dataset"]
    assert body["permutations"] == 2000
    rows = {(r["group"]["dataset"], r["predictor"]): r for r in body["rows"]}
    names = (*PREDICTOR_NAMES, *BASELINE_NAMES)
    assert set(rows) == {(d, p) for d in ("digits", "teacher") for p in names}
    digits_good = rows[("digits", GOOD)]
    assert digits_good["kind"] == "predictor"
    assert digits_good["n_jobs"] == 2 and digits_good["n"] == 2 * len(POSITIONS)
    assert digits_good["spearman"] == pytest.approx(1.0)
    # 2 jobs, 3 or more needed for an interval over jobs; the exact p: both jobs ordered
    # exactly right (or exactly wrong) among 5! orderings each.
    assert digits_good["spearman_ci"] == [None, None]
    assert digits_good["p_value"] == pytest.approx(2 / 120**2)
    # Max-T over the 13 predictors (11 of them random numbers) with 2000 joint permutations.
    assert digits_good["p_value_adjusted"] <= 0.01
    assert rows[("teacher", REVERSED)]["spearman"] == pytest.approx(-1.0)
    assert rows[("digits", UNMEASURED)]["spearman"] is None
    assert rows[("digits", UNMEASURED)]["n_jobs"] == 0
    # gains differ by 0.01 between positions with 1e-4 seed noise: the ranking is reproducible
    assert digits_good["gain_reliability"] == pytest.approx(1.0)
    assert digits_good["correlation_ceiling"] == pytest.approx(1.0)
    # The gain grows with the position: the position index baseline ranks it as well as GOOD.
    index = rows[("digits", Baseline.POSITION_INDEX.value)]
    assert index["kind"] == "baseline" and index["spearman"] == pytest.approx(1.0)
    assert index["p_value_adjusted"] is None


def test_pooled_spearman_matches_scipy(
    client: TestClient, factory: sessionmaker[Session], three_jobs: list[int]
) -> None:
    body = client.get("/api/v1/calibration", params={"group_by": "all", "resamples": 0}).json()
    name = PREDICTOR_NAMES[1]
    row = next(r for r in body["rows"] if r["predictor"] == name)
    with factory() as session:
        inserted = session.scalars(select(Insertion)).all()
    means: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for r in inserted:
        assert r.predictors is not None and r.gain_vs_control is not None
        means.setdefault((r.job_id, r.position), []).append((r.predictors[name], r.gain_vs_control))
    xs = [sum(v[0] for v in vals) / len(vals) for vals in means.values()]
    ys = [sum(v[1] for v in vals) / len(vals) for vals in means.values()]
    assert row["group"] == {} and row["n"] == len(xs) == 15
    assert row["pooled_spearman"] == pytest.approx(stats.spearmanr(xs, ys).statistic)
    assert row["pooled_ci"] == [None, None], "3 jobs are too few clusters for an interval"


def test_bad_permutations_are_a_422(client: TestClient) -> None:
    answer = client.get("/api/v1/calibration", params={"permutations": -1})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "permutations"]


def test_unknown_group_by_is_a_422_naming_it(client: TestClient) -> None:
    answer = client.get("/api/v1/calibration", params={"group_by": "dataset,colour"})
    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["query", "group_by"] and "colour" in detail["msg"]


def test_csv_has_configuration_and_predictor_columns(
    client: TestClient, three_jobs: list[int]
) -> None:
    answer = client.get("/api/v1/calibration", params={"format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 3 * len(POSITIONS) * len(SEEDS)
    assert {"model", "data", "norm", "depth", *PREDICTOR_NAMES} <= set(rows[0])
    assert {r["norm"] for r in rows} == {"layer", "rms"}
    assert {r["data"] for r in rows} == {"digits", "teacher"}


def test_results_page_shows_the_table_and_a_scatter_per_predictor(
    client: TestClient, three_jobs: list[int]
) -> None:
    page = client.get("/results", params={"group_by": "norm"})
    assert page.status_code == 200
    table = re.findall(r'<tr data-predictor="(\w+)" data-kind="predictor">', page.text)
    assert sorted(table) == sorted(PREDICTOR_NAMES * 2)  # norms layer and rms
    baselines = re.findall(r'<tr data-predictor="(\w+)" data-kind="baseline">', page.text)
    assert sorted(baselines) == sorted(BASELINE_NAMES * 2)
    for name in PREDICTOR_NAMES:
        if name == UNMEASURED:
            assert f'id="predictor-{name}-empty"' in page.text
            continue
        match = re.search(
            rf'<script type="application/json" id="predictor-{name}-spec">(.*?)</script>',
            page.text,
            re.S,
        )
        assert match, name
    found = re.search(rf'id="predictor-{GOOD}-spec">(.*?)</script>', page.text, re.S)
    assert found is not None
    u_chart = found.group(1)
    assert u_chart.count('"type": "scatter"') == 3, "one trace (colour, legend entry) per job"
    assert '"tickmode": "array"' in u_chart, "5 decades of GOOD: symmetric-log axis"
    assert 'href="/api/v1/calibration?format=csv"' in page.text
    bad = client.get("/results", params={"group_by": "colour"})
    assert bad.status_code == 200 and 'id="group-problem"' in bad.text


def test_calibration_for_job_uses_similar_jobs(
    factory: sessionmaker[Session], three_jobs: list[int]
) -> None:
    with factory() as session:
        job = session.get(Job, three_jobs[0])
        assert job is not None
        summary = calibration_for_job(session, job, resamples=100)
    assert summary is not None
    assert summary.predictor == GOOD  # the spec's `by`
    assert summary.n_jobs == 1  # only this digits/layer job shares the configuration
    assert summary.rho == pytest.approx(1.0)
    assert summary.p_value == pytest.approx(2 / 120)  # one job of 5 positions, ordered right
    assert summary.gain_reliability == pytest.approx(1.0)


def test_symlog_axis_only_when_values_span_decades() -> None:
    from app.web.charts import symlog_axis

    assert symlog_axis([0.1, 0.5, 2.0, None]) is None  # 1.3 decades: linear
    axis = symlog_axis([-1e-5, 0.0, 1e-3, 2.0])
    assert axis is not None and axis.threshold == 1e-5
    values = [-1e-5, 0.0, 1e-3, 2.0]
    plotted = [axis.forward(v) for v in values]
    assert plotted == sorted(plotted)  # order kept
    assert axis.forward(-1e-3) == -axis.forward(1e-3)  # symmetric
    assert axis.forward(1e-5) == pytest.approx(math.log10(2.0))  # linear-to-log at threshold
    tickvals, ticktext = axis.ticks(values)
    assert "0" in ticktext and "-1e-05" in ticktext and "1" in ticktext
    assert tickvals == sorted(tickvals)
