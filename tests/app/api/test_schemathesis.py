"""Property-based runs of schemathesis against the app's own OpenAPI schema.

Stateless: every operation, valid and invalid inputs, authenticated; no answer may be a
server error (5xx). Stateful: sequences of calls that follow the schema's OpenAPI links (a
created job to its page, cancel, metrics, insertions, artifacts, events, results; a created
token to its revocation) over the whole API; no 5xx, and every answer's status, content
type and body match the schema. Both are bounded to run in about a minute on two cores.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from sqlalchemy import delete

from app.api.main import create_app
from app.api.schemas import MAX_ID
from app.db.models import ApiToken, Job
from app.settings import Settings
from app.tokens import TokenScope, create_token

EXAMPLES_PER_OPERATION = 10
"""Bounded so that the whole run takes well under a minute on two cores."""


def test_no_operation_answers_with_a_server_error(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts"))
    app.state.sse_max_seconds = 0.0  # event streams of running jobs end after one poll
    with app.state.session_factory() as session:
        _, token = create_token(session, "schemathesis", TokenScope.ADMIN)
        session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        job = client.post(
            "/api/v1/jobs",
            json={"kind": "train", "data": {"name": "digits"}, "model": {"kind": "mlp"}},
            headers=auth,
        ).json()

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
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
            def run(case: schemathesis.Case[Any]) -> None:
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


STATEFUL_SCENARIOS = 80
"""Scenarios of the stateful run (each up to STATEFUL_STEPS linked calls)."""
STATEFUL_STEPS = 10
RESPONSE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_stateful_sequences_follow_links_without_errors(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts"))
    app.state.sse_max_seconds = 0.0  # event streams of running jobs end after one poll
    with app.state.session_factory() as session:
        row, token = create_token(session, "schemathesis", TokenScope.ADMIN)
        session.commit()
    own_token_id = row.id
    auth = {"Authorization": f"Bearer {token}"}

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Valid inputs only: sequences need created resources to follow links from (the
    # stateless test above sends the invalid inputs, operation by operation).
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    links = {
        (path, method, status): set(response.get("links", {}))
        for path, item in schema.raw_schema["paths"].items()
        for method, operation in item.items()
        for status, response in operation.get("responses", {}).items()
        if response.get("links")
    }
    assert {"GetJob", "CancelJob", "JobMetrics", "JobInsertions"} <= links[
        ("/api/v1/jobs", "post", "201")
    ]
    assert "RevokeToken" in links[("/api/v1/tokens", "post", "201")]

    seen: Counter[tuple[str, int]] = Counter()
    linked: Counter[str] = Counter()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]  # built at run time
        def setup(self) -> None:
            # Every scenario starts from the same database (no jobs, only the run's token):
            # Hypothesis replays scenarios and needs the same calls to get the same answers.
            with app.state.session_factory() as session:
                session.execute(delete(Job))
                session.execute(delete(ApiToken).where(ApiToken.id != own_token_id))
                session.commit()

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": auth}

        def before_call(self, case: schemathesis.Case[Any]) -> None:
            case.headers = CaseInsensitiveDict({**case.headers, **auth})
            # The run's own token must survive it: a drawn id equal to it revokes another.
            if case.path_parameters and case.path_parameters.get("token_id") == own_token_id:
                case.path_parameters["token_id"] = MAX_ID

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case[Any],
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            seen[(f"{case.method} {case.operation.path}", response.status_code)] += 1
            if "{" in case.operation.path and response.status_code < 400:
                linked[f"{case.method} {case.operation.path}"] += 1
            case.validate_response(
                response, checks=RESPONSE_CHECKS, headers=auth, transport_kwargs=kwargs
            )

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: created jobs and tokens were read, cancelled or revoked through
    # them (which operations exactly depends on the rules Hypothesis draws).
    assert seen[("POST /api/v1/jobs", 201)] > 0, seen
    job_operations = sum(n for op, n in linked.items() if "{job_id}" in op)
    assert job_operations >= 3, (linked, seen)
    assert linked["DELETE /api/v1/tokens/{token_id}"] > 0, (linked, seen)
