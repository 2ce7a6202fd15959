"""The server-rendered pages over a real migrated database (SQLite and PostgreSQL).

Jobs reach the database through the queue's own functions (enqueue, claim, complete, fail),
with a result dict shaped exactly as docs/architecture.md fixes it. The browser tests
(test_browser.py) cover the same pages with a real experiment run and real chart drawing.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.api.main import create_app
from app.db.models import Insertion, Job
from app.db.session import session_factory
from app.queue import claim_next_job, complete_job, enqueue_job, fail_job
from app.settings import Settings
from app.tokens import create_token
from app.web.results import points_from_positions, positions_from_insertions, spearman

EXPAND_SPEC: dict[str, Any] = {
    "kind": "expand",
    "name": "pages-digits",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 1},
    "expand": {"select": "explicit", "positions": [0, 2], "seeds": [0, 1], "continue_steps": 5},
}


def _certificate(decrease: float, verdict: str, family: str) -> dict[str, Any]:
    return {
        "risk_decrease": decrease,
        "risk_decrease_ci": [decrease - 0.002, decrease + 0.003],
        "interval_method": "envelope(kurtosis_t, hall_skew_t)",
        "p_value": 0.01,
        "verdict": verdict,
        "verdict_counts": {"holds": 2 * (verdict == "holds"), "fails": 0, "undecided": 0},
        "family_verdict": family,
        "min_effect": 0.0,
        "examples": 287,
    }


def documented_result(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A result dict with the field names of docs/architecture.md and random values."""
    measured = spec["expand"]["positions"]
    seeds = spec["expand"]["seeds"]
    n_positions = spec["model"]["depth"] + 1
    records, positions = [], []
    certificates = {}
    for position in range(n_positions):
        decrease = rng.uniform(-0.004, 0.006)
        verdict = "holds" if decrease > 0.003 else ("fails" if decrease < -0.002 else "undecided")
        family = verdict if abs(decrease) > 0.004 else "undecided"
        certificates[position] = _certificate(decrease, verdict, family)
    for position in measured:
        gains = []
        u = rng.uniform(0.01, 1.0)
        for seed in seeds:
            gain = rng.gauss(0.0, 0.01)
            gains.append(gain)
            records.append(
                {
                    "position": position,
                    "depth_before": 2,
                    "depth_after": 3,
                    "seed": seed,
                    "function_drift_eval": 0.0,
                    "function_drift_train": 0.0,
                    "descent": {
                        "grad_norm_sq_train": u * 1.1,
                        "grad_norm_sq_val": u * 0.9,
                        "grad_norm_sq_unbiased": u,
                        "grad_norm_sq_test_limit": u - 0.5,
                        "confidence": 0.95,
                        "nonzero_gradient_p_value": 0.01 if u > 0.5 else 0.3,
                        "nonzero_gradient": "shown" if u > 0.5 else "not_shown",
                        "cosine_train_val": 0.8,
                        "step": 0.1,
                        "predicted_val_risk_delta": -0.1 * u,
                    },
                    "certificate": {
                        "risk_decrease": certificates[position]["risk_decrease"],
                        "risk_decrease_ci": certificates[position]["risk_decrease_ci"],
                        "p_value": 0.01,
                        "verdict": certificates[position]["verdict"],
                        "min_effect": 0.0,
                        "examples": 287,
                    },
                    "jumpboard": {
                        "step": 0.1,
                        "val_risk_delta": -0.01,
                        "test_risk_delta": -0.01,
                        "test_risk_delta_ci": [-0.02, 0.0],
                    },
                    "realized": {
                        "steps": 5,
                        "base_test_risk": 1.0,
                        "base_test_error": 0.3,
                        "expanded_test_risk": 0.9 - gain,
                        "expanded_test_error": 0.3,
                        "control_test_risk": 0.9,
                        "control_test_error": 0.3,
                        "gain_vs_control": gain,
                        "gain_ci": [gain - 0.01, gain + 0.01],
                    },
                }
            )
        mean = sum(gains) / len(gains)
        shown = "shown" if u > 0.5 else "not_shown"
        positions.append(
            {
                "position": position,
                "n_seeds": len(seeds),
                "certificate": certificates[position],
                "grad_norm_sq_unbiased": u,
                "seeds_test_limit": u - 0.5,
                "nonzero_gradient": shown,
                "nonzero_gradient_counts": {
                    "shown": len(seeds) if u > 0.5 else 0,
                    "not_shown": 0 if u > 0.5 else len(seeds),
                },
                "nonzero_gradient_family": shown,
                "family_method": "holm",
                "predicted_val_risk_delta": -0.1 * u,
                "gain_mean": mean,
                "gain_std": 0.01,
                "gain_ci": [mean - 0.02, mean + 0.03],
                "gain_ci_method": "crossed_random_effects_t(seeds, test_examples)",
            }
        )
    return {
        "kind": "expand",
        "spec": spec,
        "device": "cpu",
        "torch_version": "test",
        "test_risk": 0.9,
        "test_error": 0.3,
        "val_risk": 0.95,
        "val_error": 0.31,
        "train_risk": 0.8,
        "train_error": 0.25,
        "parameters": 1234,
        "curves": {
            "train/loss": [[s, 2.0 - 0.1 * s] for s in range(8)],
            "val/loss": [[7, 1.3]],
            "train/accuracy": [[s, 0.1 * s] for s in range(8)],
            "val/accuracy": [[7, 0.6]],
        },
        "timings": {"total_s": 1.5, "train_s": 1.0},
        "artifacts": ["base.ckpt"],
        "scan": {
            "method": "single_pass",
            "reason": "parameter-free norm",
            "positions": [
                {
                    "position": p,
                    "certificate": certificates[p],
                    "grad_norm_sq_train": 0.2,
                    "grad_norm_sq_unbiased": 0.1 + p,
                    "seeds_test_limit": 0.05 + p,
                    "nonzero_gradient": "shown",
                    "nonzero_gradient_family": "shown",
                }
                for p in range(n_positions)
            ],
        },
        "insertions": records,
        "positions": positions,
    }


@pytest.fixture
def factory(db_url: str) -> sessionmaker[Session]:
    """A session factory on a fresh migrated database."""
    return session_factory(db_url)


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The whole app (API and pages) over the fresh database."""
    settings = Settings(
        database_url=db_url, artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def token(factory: sessionmaker[Session]) -> str:
    """A valid API token."""
    with factory() as session:
        _, plain = create_token(session, "pages-test")
        session.commit()
    return plain


def finished_expand_job(
    factory: sessionmaker[Session],
    tmp_path: Path,
    seed: int = 0,
    spec: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Queue, claim and complete an expand job the way the worker does; (job id, result)."""
    spec = spec or EXPAND_SPEC
    with factory() as session:
        job_id = enqueue_job(session, spec).id
    claim = claim_next_job(factory, "pages-test-worker", 60.0)
    assert claim is not None and claim.job_id == job_id
    job_dir = tmp_path / "artifacts" / str(job_id)  # Settings.job_dir of the `client` app
    job_dir.mkdir(parents=True)
    (job_dir / "base.ckpt").write_bytes(b"checkpoint bytes")
    result = documented_result(spec, random.Random(seed))
    assert complete_job(factory, claim, result, job_dir=job_dir)
    return job_id, result


def chart_spec(html: str, element_id: str) -> dict[str, Any]:
    """The plot spec embedded for the chart drawn into `element_id`."""
    match = re.search(
        rf'<script type="application/json" id="{element_id}-spec">(.*?)</script>', html, re.S
    )
    assert match, f"no chart spec for #{element_id}"
    parsed: dict[str, Any] = json.loads(match.group(1))
    return parsed


def test_job_list_shows_jobs_and_filters_by_status(
    client: TestClient, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    done_id, _ = finished_expand_job(factory, tmp_path)
    with factory() as session:
        queued_id = enqueue_job(session, {"kind": "train", "name": "waiting"}).id

    page = client.get("/jobs")
    assert page.status_code == 200
    rows = dict(re.findall(r'data-job-id="(\d+)" data-status="(\w+)"', page.text))
    assert rows == {str(done_id): "succeeded", str(queued_id): "queued"}
    assert 'data-refresh="' in page.text, "a queued job makes the list refresh itself"
    assert f'href="/jobs/{done_id}"' in page.text

    only_done = client.get("/jobs", params={"status": "succeeded"})
    assert re.findall(r'data-job-id="(\d+)"', only_done.text) == [str(done_id)]
    assert "data-refresh" not in only_done.text

    assert client.get("/").text.count("data-job-id=") == 2
    bad = client.get("/jobs", params={"status": "exploded"})
    assert bad.status_code == 400
    assert "unknown status &#39;exploded&#39;" in bad.text


def test_job_page_shows_result_curves_and_insertion_chart(
    client: TestClient, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    job_id, result = finished_expand_job(factory, tmp_path)
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    html = page.text
    assert "data-refresh" not in html
    assert "not a forecast" in html.lower()
    spec_block = re.search(r'<pre class="spec" id="job-spec">(.*?)</pre>', html, re.S)
    assert spec_block and json.loads(unescape(spec_block.group(1)))["name"] == "pages-digits"

    loss = chart_spec(html, "loss-chart")
    assert {t["name"]: len(t["x"]) for t in loss["data"]} == {
        key: len(points) for key, points in result["curves"].items() if key.endswith("loss")
    }
    accuracy = chart_spec(html, "accuracy-chart")
    assert sorted(t["name"] for t in accuracy["data"]) == ["train/accuracy", "val/accuracy"]

    certified, realized = chart_spec(html, "insertion-chart")["data"]
    scanned = result["scan"]["positions"]
    assert certified["customdata"] == [p["position"] for p in scanned]
    measured = {p["position"]: p for p in result["positions"]}
    assert realized["customdata"] == sorted(measured)
    for position, y, plus, minus in zip(
        certified["customdata"],
        certified["y"],
        certified["error_y"]["array"],
        certified["error_y"]["arrayminus"],
        strict=True,
    ):
        cert = scanned[position]["certificate"]
        low, high = cert["risk_decrease_ci"]
        assert y == pytest.approx(cert["risk_decrease"])
        assert (y - minus, y + plus) == (pytest.approx(low), pytest.approx(high))
    for position, y, plus, minus in zip(
        realized["customdata"],
        realized["y"],
        realized["error_y"]["array"],
        realized["error_y"]["arrayminus"],
        strict=True,
    ):
        low, high = measured[position]["gain_ci"]
        assert (y - minus, y + plus) == (pytest.approx(low), pytest.approx(high))

    table = re.search(r'<table class="data compact" id="insertion-table">(.*?)</table>', html, re.S)
    assert table and table.group(1).count("<tr") == 1 + len(result["insertions"])
    assert f'href="/api/v1/jobs/{job_id}/artifacts/base.ckpt"' in html
    assert client.get(f"/api/v1/jobs/{job_id}/artifacts/base.ckpt").content == (b"checkpoint bytes")


def test_job_page_escapes_error_and_reports_missing_job(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    with factory() as session:
        job_id = enqueue_job(session, {"kind": "train"}).id
    claim = claim_next_job(factory, "pages-test-worker", 60.0)
    assert claim is not None
    assert fail_job(factory, claim, "boom <script>alert('x')</script>")
    html = client.get(f"/jobs/{job_id}").text
    assert "<script>alert" not in html
    assert "boom &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "No loss recorded yet." in html

    missing = client.get("/jobs/987654")
    assert missing.status_code == 404
    assert "There is no job 987654." in missing.text


def test_cancel_button_needs_a_token(
    client: TestClient, factory: sessionmaker[Session], token: str
) -> None:
    with factory() as session:
        job_id = enqueue_job(session, {"kind": "train"}).id
    assert claim_next_job(factory, "pages-test-worker", 60.0) is not None
    assert 'id="cancel-button"' in client.get(f"/jobs/{job_id}").text

    refused = client.post(f"/jobs/{job_id}/cancel", data={"token": "jb_wrong"})
    assert "Cancel refused" in refused.text
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.cancel_requested is False

    accepted = client.post(f"/jobs/{job_id}/cancel", data={"token": token})
    assert accepted.status_code == 200 and 'id="cancel-button"' not in accepted.text
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.cancel_requested is True


def test_results_page_scatter_rank_correlation_and_filters(
    client: TestClient, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    results = [finished_expand_job(factory, tmp_path, seed=s) for s in range(3)]
    page = client.get("/results")
    assert page.status_code == 200
    points = [(job_id, p) for job_id, result in results for p in result["positions"]]
    scatter = chart_spec(page.text, "results-chart")["data"][0]
    assert scatter["x"] == pytest.approx([p["certificate"]["risk_decrease"] for _, p in points])
    assert scatter["y"] == pytest.approx([p["gain_mean"] for _, p in points])
    rho = spearman(scatter["x"], scatter["y"])
    rho_shown = re.search(r'id="spearman-rho">([-\d.]+)<', page.text)
    assert rho_shown is not None and rho_shown.group(1) == f"{rho:.3f}"
    n_shown = re.search(r'id="spearman-n">(\d+)<', page.text)
    assert n_shown is not None and n_shown.group(1) == str(len(points))
    assert 'href="/api/v1/results?format=csv"' in page.text

    for verdict in ("holds", "fails", "undecided"):
        filtered = client.get("/results", params={"verdict": verdict}).text
        expected = [p for _, p in points if p["certificate"]["family_verdict"] == verdict]
        table = re.search(r"id=\"results-table\".*?<tbody>(.*?)</tbody>", filtered, re.S)
        shown = re.findall(r'class="family-verdict">(\w+)<', table.group(1) if table else "")
        assert shown == [verdict] * len(expected)
    table = re.search(r"id=\"results-table\".*?<tbody>(.*?)</tbody>", page.text, re.S)
    assert table
    shown_verdicts = re.findall(r'class="verdict"[^>]*>(\w+)<', table.group(1))
    assert shown_verdicts == [p["certificate"]["verdict"] for _, p in points]
    shown_certificates = re.findall(r'class="num certificate">([^<]+)<', table.group(1))
    assert [float(b) for b in shown_certificates] == pytest.approx(
        [p["certificate"]["risk_decrease"] for _, p in points], rel=1e-3, abs=1e-6
    )
    shown_tests = re.findall(r'class="nonzero-gradient"[^>]*>([\w ]+)<', table.group(1))
    assert shown_tests == [p["nonzero_gradient"].replace("_", " ") for _, p in points]
    method = "crossed_random_effects_t(seeds, test_examples)"
    assert table.group(1).count(method) == len(points)

    one_job = client.get("/results", params={"job": str(results[1][0])}).text
    assert chart_spec(one_job, "results-chart")["data"][0]["x"] == pytest.approx(
        [p["certificate"]["risk_decrease"] for p in results[1][1]["positions"]]
    )
    assert re.search(r'id="spearman-rho">undefined<', one_job), "2 points: rho undefined"


def test_spearman_matches_the_rank_difference_formula() -> None:
    rng = random.Random(7)
    xs = [rng.random() for _ in range(25)]
    ys = [x + rng.gauss(0, 0.3) for x in xs]
    rank_x = {v: i for i, v in enumerate(sorted(xs))}
    rank_y = {v: i for i, v in enumerate(sorted(ys))}
    d2 = sum((rank_x[x] - rank_y[y]) ** 2 for x, y in zip(xs, ys, strict=True))
    n = len(xs)
    assert spearman(xs, ys) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2], [1, 2]) is None
    with pytest.raises(ValueError, match="pairs"):
        spearman([1, 2, 3], [1, 2])


def test_points_rebuilt_from_rows_and_older_results_say_na() -> None:
    def insertion(seed: int, outcome: str | None, decrease: float | None) -> Insertion:
        return Insertion(
            position=1,
            seed=seed,
            grad_norm_sq_unbiased=0.5 + seed,
            grad_norm_sq_test_limit=0.1,
            nonzero_gradient=outcome,
            certificate_risk_decrease=decrease,
            gain_vs_control=0.01 * seed,
        )

    rebuilt = positions_from_insertions(
        [insertion(0, "shown", 0.002), insertion(1, "not_shown", 0.004)]
    )
    (point,) = points_from_positions(7, "rows", {}, rebuilt)
    # the seeds' mean decrease on the same certificate examples; no interval, no verdict
    assert point["certificate_risk_decrease"] == pytest.approx(0.003)
    assert point["certificate_ci"] == [None, None] and point["verdict"] == "n/a"
    assert point["grad_norm_sq_unbiased"] == pytest.approx(1.0)
    assert point["nonzero_gradient"] == "not_shown"  # every seed must show it
    assert point["nonzero_gradient_counts"] == {"shown": 1, "not_shown": 1}
    assert point["family_verdict"] == "n/a" and point["gain_ci_method"] == "n/a"
    assert point["gain_ci"] == [None, None]
    missing = positions_from_insertions([insertion(0, "shown", None), insertion(1, None, 0.1)])
    assert missing[0]["certificate"]["risk_decrease"] is None
    assert missing[0]["nonzero_gradient"] is None

    old_row = {
        "position": 0,
        "n_seeds": 2,
        "certified_gain": 0.4,
        "certified_gain_lcb": 0.1,
        "verdict": "holds",
        "family_verdict": "holds",
        "seeds_lcb": 0.2,
    }
    (old,) = points_from_positions(8, "older", {}, [old_row])
    assert (old["verdict"], old["family_verdict"]) == ("n/a", "n/a")  # no certificate in nats
    assert old["certificate_risk_decrease"] is None
    assert old["nonzero_gradient"] == "shown" and old["grad_norm_sq_unbiased"] == 0.4


def test_submit_form_lists_every_problem_and_creates_a_valid_job(
    client: TestClient, factory: sessionmaker[Session], token: str
) -> None:
    assert 'id="submit-form"' in client.get("/submit").text
    bad = client.post(
        "/submit",
        data={"spec": "kind: expand\nmodel: {width: 0, colour: red}\n", "token": token},
    )
    assert bad.status_code == 422
    problems = re.findall(r'<li class="problem">(.*?)</li>', bad.text)
    assert problems == [
        "model.width: Input should be greater than or equal to 1",
        "model.colour: unknown key",
    ]
    assert "colour: red" in bad.text, "the submitted text is kept in the form"

    broken = client.post("/submit", data={"spec": "kind: [unclosed", "token": token})
    assert re.findall(r'<li class="problem">(.*?)</li>', broken.text)[0].startswith(
        "spec: not valid YAML"
    )
    no_token = client.post("/submit", data={"spec": json.dumps(EXPAND_SPEC), "token": ""})
    assert no_token.status_code == 401
    assert "token: missing, invalid or revoked" in no_token.text
    huge = dict(EXPAND_SPEC, model={"kind": "mlp", "width": 4096, "depth": 256})
    over_budget = client.post("/submit", data={"spec": json.dumps(huge), "token": token})
    assert over_budget.status_code == 422
    assert "exceeds the limit" in over_budget.text
    with factory() as session:
        assert session.query(Job).count() == 0

    created = client.post(
        "/submit", data={"spec": json.dumps(EXPAND_SPEC), "token": token}, follow_redirects=False
    )
    assert created.status_code == 303
    job_id = int(created.headers["location"].rsplit("/", 1)[1])
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.kind, job.spec["expand"]["positions"]) == (
            "queued",
            "expand",
            [0, 2],
        )


def test_static_files_and_plotly_bundle_are_cached(client: TestClient) -> None:
    import plotly.offline

    bundle = client.get("/static/vendor/plotly.min.js")
    assert bundle.status_code == 200
    assert bundle.content == plotly.offline.get_plotlyjs().encode()
    assert "max-age=31536000" in bundle.headers["cache-control"]
    again = client.get(
        "/static/vendor/plotly.min.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == "no-cache"  # revalidated on every load
    fresh = client.get("/static/style.css", headers={"If-None-Match": css.headers["etag"]})
    assert fresh.status_code == 304
    assert client.get("/static/pyproject.toml").status_code == 404


def test_pages_never_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.api.main import create_app\n"
        "from app.db.migrate import upgrade\n"
        "from app.settings import Settings\n"
        f"url = 'sqlite:///{tmp_path}/t.db'\n"
        "upgrade(url)\n"
        f"app = create_app(Settings(database_url=url, artifact_dir='{tmp_path}/a'))\n"
        "client = TestClient(app)\n"
        "for path in ('/jobs', '/results', '/submit', '/jobs/1'):\n"
        "    client.get(path)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'lightning' not in sys.modules, 'lightning was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_finished_jobs_page_offers_to_expand_its_network(
    client: TestClient, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    job_id, _ = finished_expand_job(factory, tmp_path)
    page = client.get(f"/jobs/{job_id}")
    assert f'href="/submit?base_job={job_id}"' in page.text
    form = client.get("/submit", params={"base_job": str(job_id)})
    assert f"base_job: {job_id}" in unescape(form.text)
    assert "base_job:" not in client.get("/submit", params={"base_job": "x; drop"}).text
