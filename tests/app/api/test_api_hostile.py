"""Hostile and out-of-range input: answers are 404/422 (never 500), small (never the input
echoed back), and checked after authorization; YAML and JSON are bounded in size, nesting and
alias expansion in the API, the web form and the CLI; the compute budget covers data, teacher
and activation memory.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_client import TINY_SPEC
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings
from app.tokens import TokenScope, create_token

ALIAS_BOMB = textwrap.dedent(
    """\
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    name: *g
    """
)
DEEP_YAML = "model: " + "[" * 5000 + "]" * 5000 + "\n"


class Api:
    """A test client of a fresh app, with a submit token."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}
        self.token = token

    def submit(self) -> int:
        response = self.client.post("/api/v1/jobs", json=TINY_SPEC, headers=self.auth)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app on a fresh SQLite and a fresh PostgreSQL database."""
    app = create_app(Settings(database_url=db_url, artifact_dir=tmp_path / "artifacts"))
    with app.state.session_factory() as session:
        _, token = create_token(session, "hostile", TokenScope.SUBMIT)
        session.commit()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, token)


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_ids_past_the_database_range_are_404_or_422(api: Api) -> None:
    api.submit()
    for job_id in (2**31 - 1, 2**31, 2**32 + 1, 2**63, 10**30):
        for suffix in ("", "/metrics", "/insertions", "/artifacts", "/artifacts/a.txt", "/events"):
            response = api.client.get(f"/api/v1/jobs/{job_id}{suffix}")
            assert response.status_code in (404, 422), (job_id, suffix, response.text)
        cancel = api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=api.auth)
        assert cancel.status_code in (404, 422), (job_id, cancel.text)
        results = api.client.get("/api/v1/results", params={"job_id": job_id})
        assert results.status_code in (200, 422), (job_id, results.text)
        page = api.client.get(f"/jobs/{job_id}")
        assert page.status_code in (404, 422), (job_id, page.text[:200])
        form = api.client.post(f"/jobs/{job_id}/cancel", data={"token": api.token})
        assert form.status_code in (404, 422), (job_id, form.text[:200])


def test_overflowing_and_malformed_cursors_are_422(api: Api) -> None:
    api.submit()
    bad = [
        _cursor('{"before": 100000000000000000000000000000}'),
        _cursor('{"before": 2147483649}'),
        _cursor('{"before": 1e999}'),
        _cursor('{"before": -5}'),
        _cursor('{"before": true}'),
        _cursor('{"before": "12"}'),
        _cursor("[1, 2]"),
        _cursor('"before"'),
        "%%%",
        "\u0663\u0664",
    ]
    for cursor in bad:
        for path in ("/api/v1/jobs", "/api/v1/results"):
            response = api.client.get(path, params={"cursor": cursor})
            assert response.status_code == 422, (path, cursor, response.text)
            assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_non_ascii_digits_in_the_results_page_filter(api: Api) -> None:
    for job in ("\u0663", "\u00b2", "12\u0660", "99999999999"):
        response = api.client.get("/results", params={"job": job})
        assert response.status_code == 200, (job, response.text[:200])


def test_nul_bytes_in_query_strings_are_422(api: Api) -> None:
    job_id = api.submit()
    cases = [
        (f"/api/v1/jobs/{job_id}/metrics", {"name": "lo\x00ss"}),
        (f"/api/v1/jobs/{job_id}/metrics", {"split": "\x00"}),
        ("/api/v1/jobs", {"cursor": "\x00"}),
        ("/jobs", {"status": "run\x00ning"}),
        ("/results", {"data": "a\x00"}),
    ]
    for path, params in cases:
        response = api.client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert "NUL" in response.json()["detail"][0]["msg"]
    ok = api.client.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "loss"})
    assert ok.status_code == 200


def test_a_422_never_echoes_large_input(api: Api) -> None:
    big = "x" * 300_000
    bodies = [
        {**TINY_SPEC, big: 1},  # an unknown key: its name is part of the error's location
        {**TINY_SPEC, "kind": big},
        {**TINY_SPEC, "name": big},
        {**TINY_SPEC, "model": {"kind": big}},
        {"spec": TINY_SPEC, big: 1},
    ]
    for body in bodies:
        response = api.client.post("/api/v1/jobs", json=body, headers=api.auth)
        assert response.status_code == 422, response.text[:300]
        assert len(response.content) < 4_000, len(response.content)
        assert response.json()["detail"], "the problem is still named"
    query = api.client.get("/api/v1/jobs", params={"status": big[:50_000]})
    assert query.status_code == 422
    assert len(query.content) < 4_000


def test_api_refuses_deeply_nested_json(api: Api) -> None:
    nested: Any = 1
    for _ in range(60):
        nested = {"x": nested}
    response = api.client.post("/api/v1/jobs", json={**TINY_SPEC, "data": nested}, headers=api.auth)
    assert response.status_code == 422
    assert "nested deeper than" in response.text
    very_deep = b'{"kind": "train", "data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    response = api.client.post(
        "/api/v1/jobs",
        content=very_deep,
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500


def test_compute_budget_covers_data_teacher_and_activations(api: Api) -> None:
    cases = {
        # 10M teacher samples of dimension 4096: about 160 GB of inputs.
        "data": {
            **TINY_SPEC,
            "data": {"name": "teacher", "teacher_dim": 4096, "teacher_train_size": 10_000_000},
        },
        # A tiny student, but the labelling teacher has about 1e9 parameters.
        "data.teacher_width": {
            **TINY_SPEC,
            "data": {"name": "teacher", "teacher_width": 4096, "teacher_depth": 32},
        },
        # 42M parameters (under the limit) but 65536 x 512 channels x 40 x 16 blocks per step.
        "train.batch_size": {
            **TINY_SPEC,
            "data": {"name": "mnist1d"},
            "model": {"kind": "conv1d", "width": 512, "depth": 16},
            "train": {"epochs": 1, "batch_size": 65_536},
        },
    }
    for loc, spec in cases.items():
        response = api.client.post("/api/v1/jobs", json=spec, headers=api.auth)
        assert response.status_code == 422, (loc, response.text)
        locs = {".".join(map(str, d["loc"][1:])): d["msg"] for d in response.json()["detail"]}
        assert loc in locs, (loc, locs)
        assert "exceeds the limit" in locs[loc] or "over the limit" in locs[loc]
    assert api.client.get("/api/v1/jobs").json()["items"] == []
    api.submit()  # an ordinary spec still passes


def test_a_sweep_is_refused_when_any_point_breaks_any_limit(api: Api) -> None:
    """Issue 22: sweep points once escaped the data, activation-memory and teacher limits.
    Each grid below has one harmless point and one point over one limit; the 422 names the
    point by its index, field and grid coordinates, and nothing is queued."""
    cases = {
        "points.1.data": ("data.teacher_train_size", [1_000, 10_000_000], {"teacher_dim": 4096}),
        "points.1.data.teacher_width": ("data.teacher_width", [8, 4096], {"teacher_depth": 32}),
        "points.1.train.batch_size": ("train.batch_size", [64, 65_536], None),
    }
    for loc, (axis, values, data) in cases.items():
        spec: dict[str, Any] = {
            "kind": "sweep",
            "name": "over budget",
            "train": {"epochs": 1, "batch_size": 64},
            "grid": {axis: values},
        }
        if data is None:
            spec["data"] = {"name": "mnist1d"}
            spec["model"] = {"kind": "conv1d", "width": 512, "depth": 16}
        else:
            spec["data"] = {"name": "teacher", **data}
            spec["model"] = {"kind": "mlp", "width": 8, "depth": 1}
        response = api.client.post("/api/v1/jobs", json=spec, headers=api.auth)
        assert response.status_code == 422, (loc, response.text)
        locs = {".".join(map(str, d["loc"][1:])): d["msg"] for d in response.json()["detail"]}
        assert list(locs) == [loc], (loc, locs)
        message = locs[loc]
        assert "limit" in message and f"(grid point {axis}={values[1]})" in message, message
    assert api.client.get("/api/v1/jobs").json()["items"] == []


# ---- the web form ------------------------------------------------------------------------


def _problems(html: str) -> list[str]:
    return re.findall(r'<li class="problem">(.*?)</li>', html)


def test_submit_form_checks_the_token_before_parsing(api: Api) -> None:
    for token in ("", "jb_unknown"):
        for spec in ("kind: [unclosed", DEEP_YAML, ALIAS_BOMB):
            response = api.client.post("/submit", data={"spec": spec, "token": token})
            assert response.status_code == 401, response.text[:300]
            problems = _problems(response.text)
            assert len(problems) == 1 and problems[0].startswith("token:"), problems


def test_submit_form_honours_scopes(db_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=db_url, artifact_dir=tmp_path / "artifacts"))
    with app.state.session_factory() as session:
        _, reader = create_token(session, "reader", TokenScope.READ)
        _, submitter = create_token(session, "submitter", TokenScope.SUBMIT)
        session.commit()
    spec = json.dumps(TINY_SPEC)
    with TestClient(app) as client:
        refused = client.post("/submit", data={"spec": spec, "token": reader})
        assert refused.status_code == 401
        assert _problems(refused.text)[0].startswith("token:")
        created = client.post(
            "/submit", data={"spec": spec, "token": submitter}, follow_redirects=False
        )
        assert created.status_code == 303
        job_id = created.headers["location"].rsplit("/", 1)[1]
        # The job page's cancel button needs the submit scope as well.
        client.post(f"/jobs/{job_id}/cancel", data={"token": reader})
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
        client.post(f"/jobs/{job_id}/cancel", data={"token": submitter})
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_submit_form_bounds_yaml(api: Api) -> None:
    cases = {
        DEEP_YAML: "nested deeper than",
        ALIAS_BOMB: "aliases",
        '{"a": ' + "[" * 100 + "]" * 100 + "}": "nested deeper than",
    }
    for spec, reason in cases.items():
        response = api.client.post("/submit", data={"spec": spec, "token": api.token})
        assert response.status_code == 422, response.text[:300]
        problems = _problems(response.text)
        assert len(problems) == 1 and reason in problems[0], problems


# ---- the CLI's spec files --------------------------------------------------------------------

_RUN_CLI = (
    "import resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
    "from app.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`jumpboard ARGS` in a child with 2 GiB of address space and 60 s (an unbounded read of
    /dev/zero would otherwise eat the machine's memory)."""
    return subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_dev_zero_fails_fast_with_a_clear_message() -> None:
    try:
        done = _cli("submit", "/dev/zero", "--token", "jb_x", "--server", "http://127.0.0.1:9")
    except subprocess.TimeoutExpired:
        pytest.fail("`jumpboard submit /dev/zero` kept reading")
    assert done.returncode == 2, done.stderr[-500:]
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "/dev/zero" in err and "larger than the limit" in err


@pytest.mark.parametrize(
    ("text", "suffix", "reason"),
    [
        (ALIAS_BOMB, ".yaml", "aliases"),
        (DEEP_YAML, ".yaml", "nested deeper than"),
        ('{"a": ' * 100 + "1" + "}" * 100, ".json", "nested deeper than"),
        ("kind: train\nname: " + "y" * (1 << 20) + "\n", ".yaml", "larger than the limit"),
    ],
)
def test_cli_spec_files_are_bounded(tmp_path: Path, text: str, suffix: str, reason: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(text)
    done = _cli("submit", str(path), "--token", "jb_x", "--server", "http://127.0.0.1:9")
    assert done.returncode == 2, done.stderr[-500:]
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err[-500:]
    assert reason in err, err
