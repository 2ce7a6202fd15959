"""Property-based run of schemathesis against the app's own OpenAPI schema: every operation,
valid and invalid inputs, authenticated; no answer may be a server error (5xx)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.api.main import create_app
from app.settings import Settings
from app.tokens import create_token

EXAMPLES_PER_OPERATION = 15
"""Bounded so that the whole run takes well under a minute on two cores."""


def test_no_operation_answers_with_a_server_error(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts"))
    app.state.sse_max_seconds = 0.0  # event streams of running jobs end after one poll
    with app.state.session_factory() as session:
        _, token = create_token(session, "schemathesis")
        session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        job = client.post(
            "/api/v1/jobs",
            json={"kind": "train", "data": {"name": "digits"}, "model": {"kind": "mlp"}},
            headers=auth,
        ).json()

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    failures: list[str] = []
    calls = 0
    seen: Counter[tuple[str, int]] = Counter()

    for operation in operations:
        variants = [
            (GenerationMode.POSITIVE, operation.as_strategy(GenerationMode.POSITIVE, headers=auth)),
            (GenerationMode.NEGATIVE, operation.as_strategy(GenerationMode.NEGATIVE, headers=auth)),
        ]
        if "{job_id}" in operation.path:
            fixed = {"job_id": job["id"]}
            strategy = operation.as_strategy(headers=auth, path_parameters=fixed)
            variants.append((GenerationMode.POSITIVE, strategy))
        for mode, strategy in variants:

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                response = case.call()
                calls += 1
                seen[(f"{case.method} {case.operation.path}", response.status_code)] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:200]}"
                    )

            try:
                run()
            except Unsatisfiable:
                # An operation without inputs has no invalid variant to generate.
                if mode is GenerationMode.POSITIVE:
                    raise
            except Exception as exc:  # a generation problem must fail the test, with context
                pytest.fail(f"{operation.label}: {type(exc).__name__}: {exc}")
    assert calls >= len(operations) * 2
    assert failures == []
    # The spec schema in the OpenAPI document is good enough to generate specs the API accepts.
    assert seen[("POST /api/v1/jobs", 201)] > 0, seen
    assert seen[("GET /api/v1/jobs/{job_id}", 200)] > 0, seen
