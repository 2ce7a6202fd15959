"""`expand.by`: a known predictor is accepted; an unknown one is named by the spec, the API
(422) and `jumpboard validate`, without importing torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.api.main import create_app
from app.db.session import session_factory
from app.settings import Settings
from app.tokens import create_token
from expansion.specs.parsing import parse_spec
from expansion.specs.predictor_names import (
    DEFAULT_SELECTION_PREDICTOR,
    EARLY_GAIN_FRACTIONS,
    PREDICTOR_NAMES,
    SELECTABLE_PREDICTORS,
)
from expansion.specs.problems import SpecError


def test_every_selectable_predictor_is_accepted_and_the_default_is_one() -> None:
    assert DEFAULT_SELECTION_PREDICTOR in SELECTABLE_PREDICTORS
    assert parse_spec({"kind": "expand"}).expand.by == DEFAULT_SELECTION_PREDICTOR  # type: ignore[union-attr]  # kind expand
    for name in SELECTABLE_PREDICTORS:
        assert parse_spec({"kind": "expand", "expand": {"by": name}}).expand.by == name  # type: ignore[union-attr]  # kind expand
    assert set(SELECTABLE_PREDICTORS) | set(EARLY_GAIN_FRACTIONS) == set(PREDICTOR_NAMES)


@pytest.mark.parametrize("name", ["gradnorm", "early_gain_10pct"])
def test_unknown_or_post_selection_predictor_is_named(name: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"kind": "expand", "expand": {"by": name}})
    (problem,) = info.value.problems
    assert problem.startswith("expand.by: ") and repr(name) in problem


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, artifact_dir=tmp_path / "a", data_dir=tmp_path / "d")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_api_answers_422_naming_the_predictor(client: TestClient, db_url: str) -> None:
    factory: sessionmaker[Session] = session_factory(db_url)
    with factory() as session:
        _, token = create_token(session, "by-test")
        session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    bad = {"kind": "expand", "expand": {"select": "top_k", "by": "gradnorm"}}
    response = client.post("/api/v1/jobs", json=bad, headers=auth)
    assert response.status_code == 422
    (item,) = response.json()["detail"]
    assert item["loc"][-2:] == ["expand", "by"] and "'gradnorm'" in item["msg"]
    good = {"kind": "expand", "expand": {"by": "probe_val_gain"}}
    assert client.post("/api/v1/jobs", json=good, headers=auth).status_code == 201


def test_cli_validate_names_the_predictor(tmp_path: Path) -> None:
    spec = tmp_path / "by.yaml"
    spec.write_text("kind: expand\nexpand: {by: gradnorm}\n")
    code = "import sys; from app.cli import main; rc = main(sys.argv[1:]); "
    code += "print('torch imported' if 'torch' in sys.modules else '', file=sys.stderr); "
    code += "sys.exit(rc)"
    proc = subprocess.run(
        [sys.executable, "-c", code, "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "expand.by: unknown predictor 'gradnorm'" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "torch imported" not in proc.stderr
