"""The compose stack's commands, run as local processes against a real PostgreSQL.

No Docker engine runs here, so this runs what the compose services run, with the environment
docker-compose.yml gives them (only the database URL, the folders and the API's address
changed to local ones): `migrate` to completion, then `api` and `worker`; a token made the way
the docs say (`token create`); a small expand job submitted over HTTP; its insertion rows and
its page served by the API; both processes stopped with SIGTERM, as `docker compose stop` does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from compose_files import (
    COMPOSE_FILE,
    dockerfile_env,
    dockerfile_values,
    read_compose,
    service_argv,
    service_env,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

pytestmark = pytest.mark.postgres

POSTGRES_ADMIN_URL = os.environ.get(
    "JUMPBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL URL with the right to create databases."""

SMOKE_SPEC: dict[str, Any] = {
    "kind": "expand",
    "name": "compose smoke",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
    "expand": {
        "select": "top_k",
        "top_k": 2,
        "seeds": [0, 1],
        "continue_steps": 5,
        "grad_batch_size": 64,
        "line_search_points": 4,
    },
}
"""A job well under a minute on one CPU core: 2 positions x 2 seeds of 5 continuation steps."""

STARTUP_TIMEOUT_S = 90.0
JOB_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0


def _admin_execute(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def empty_database() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database (no schema: `migrate` has to make it)."""
    name = f"jb_compose_{uuid.uuid4().hex[:10]}"
    try:
        _admin_execute(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_argv(argv: list[str]) -> list[str]:
    """`jumpboard ...` as this environment's console script (the image's entrypoint)."""
    script = Path(sys.executable).with_name("jumpboard")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "app.cli"]
    return [*head, *argv[1:]]


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    """`argv` with the value after `option` replaced (the option must be there)."""
    index = argv.index(option)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def _process_env(service: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service's container: image ENV, then the service's, then the
    local replacements; no JUMPBOARD_* variable leaks in from the test process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPBOARD_")}
    env.update(dockerfile_env())
    env.update(service_env(service))
    missing = set(overrides) - set(env) - {"HOME"}
    assert not missing, f"the compose service does not set {sorted(missing)}"
    env.update(overrides)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ServiceProcess:
    """One long-running service command, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT
            )

    def assert_running(self) -> None:
        """Fail with the service's log if it has exited."""
        code = self.process.poll()
        assert code is None, f"{self.name} exited with {code}:\n{_tail(self.log)}"

    def stop(self) -> int:
        """SIGTERM, as `docker compose stop` sends; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} ignored SIGTERM:\n{_tail(self.log)}")

    def kill(self) -> None:
        """Make sure the process is gone (cleanup after a failure)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _wait_for_health(api: ServiceProcess, base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        api.assert_running()
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"api never became healthy:\n{_tail(api.log)}")


def _run_healthchecks(api_service: Mapping[str, Any], port: int, env: Mapping[str, str]) -> None:
    """The compose health check and the image's HEALTHCHECK, pointed at the local port."""
    test = [part.replace(":8000/", f":{port}/") for part in api_service["healthcheck"]["test"]]
    assert test[0] == "CMD" and test[1] == "python"
    compose_check = subprocess.run([sys.executable, *test[2:]], timeout=30, check=False)
    assert compose_check.returncode == 0
    (image_check,) = dockerfile_values("HEALTHCHECK")
    command = json.loads(image_check[image_check.index("CMD") + 3 :].strip())
    image_env = {**env, "JUMPBOARD_PORT": str(port)}
    result = subprocess.run([sys.executable, *command[1:]], env=image_env, timeout=30, check=False)
    assert result.returncode == 0
    # And both fail when nothing answers.
    dead = {**env, "JUMPBOARD_PORT": str(_free_port())}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=dead, timeout=30, check=False, capture_output=True
    )
    assert result.returncode != 0


def test_compose_services_run_a_job_end_to_end(empty_database: str, tmp_path: Path) -> None:
    """migrate -> api + worker -> token -> POST a job -> insertions and page -> clean stop."""
    services = read_compose(COMPOSE_FILE)["services"]
    logs = tmp_path / "logs"
    logs.mkdir()
    artifacts = tmp_path / "artifacts"
    overrides = {
        "JUMPBOARD_DATABASE_URL": empty_database,
        "JUMPBOARD_ARTIFACT_DIR": str(artifacts),
        "JUMPBOARD_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path / "home"),
    }
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"

    # migrate: a one-shot that must succeed before api and worker start.
    migrate_env = _process_env(services["migrate"], overrides)
    migrate = subprocess.run(
        _local_argv(service_argv(services["migrate"])),
        env=migrate_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "database at revision" in migrate.stdout

    api_argv = _local_argv(service_argv(services["api"]))
    api_argv = _with_option(_with_option(api_argv, "--host", "127.0.0.1"), "--port", str(port))
    api_env = _process_env(services["api"], overrides)
    # The worker keeps its GPU lock files on the data volume: here, the local data folder.
    lock_dir = str(tmp_path / "data" / "device-locks")
    worker_env = _process_env(
        services["worker"], {**overrides, "JUMPBOARD_DEVICE_LOCK_DIR": lock_dir}
    )
    started: list[ServiceProcess] = []
    try:
        api = ServiceProcess("api", api_argv, api_env, logs)
        started.append(api)
        worker_argv = _local_argv(service_argv(services["worker"]))
        worker = ServiceProcess("worker", worker_argv, worker_env, logs)
        started.append(worker)
        _wait_for_health(api, base_url)
        _run_healthchecks(services["api"], port, api_env)

        # The token, as the docs make it: `docker compose run --rm -T api token create`.
        created = subprocess.run(
            _local_argv(["jumpboard", "token", "create", "--name", "compose-smoke"]),
            env=api_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]

        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            refused = client.post("/api/v1/jobs", json={"spec": SMOKE_SPEC})
            assert refused.status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            answer = client.post("/api/v1/jobs", json={"spec": SMOKE_SPEC}, headers=auth)
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]

            deadline = time.monotonic() + JOB_TIMEOUT_S
            job: dict[str, Any] = answer.json()
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                assert time.monotonic() < deadline, f"job still {job['status']}"
                api.assert_running()
                worker.assert_running()
                time.sleep(1.0)
                job = client.get(f"/api/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded", f"{job}\n{_tail(worker.log)}"

            insertions = client.get(f"/api/v1/jobs/{job_id}/insertions")
            assert insertions.status_code == 200
            items = insertions.json()["items"]
            expand = SMOKE_SPEC["expand"]
            assert len(items) == expand["top_k"] * len(expand["seeds"])
            assert {item["seed"] for item in items} == set(expand["seeds"])
            assert len({item["position"] for item in items}) == expand["top_k"]
            for item in items:
                realized = item["record"]["realized"]
                assert realized["steps"] == expand["continue_steps"]
                assert item["gain_vs_control"] == pytest.approx(realized["gain_vs_control"])

            page = client.get(f"/jobs/{job_id}")
            assert page.status_code == 200
            assert 'id="insertion-chart"' in page.text

        # The worker wrote the job's files where the compose file points the shared volume.
        job_dir = artifacts / str(job_id)
        assert job_dir.is_dir() and any(job_dir.iterdir())

        assert worker.stop() == 0, _tail(worker.log)
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: a container
        # exit status of 143 after "shutdown complete" is the clean end of `serve`.
        # serve exits 143 (128 + SIGTERM) after a clean shutdown on SIGTERM
        assert api.stop() in (0, 128 + signal.SIGTERM, -signal.SIGTERM), _tail(api.log)
        assert "Application shutdown complete" in api.log.read_text(errors="replace")
    finally:
        for process in started:
            process.kill()
