"""The deployment files (Dockerfile, docker compose files, .env.example, docs) against the code.

No Docker engine runs here, so these checks read the files: each compose file is validated
against the Compose specification's JSON schema (the copy vendored by check-jsonschema), every
service command must parse with the real `jumpboard` argument parser, every `JUMPBOARD_*`
variable must be a field of `Settings` (and its value valid there), and the structure the
deployment relies on (health checks, start order, GPU reservation, volumes, non-root user)
must be in place. The readers live in tests/support/compose_files.py (the compose smoke test
runs the same commands).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_files import (
    ARTIFACT_DIR_VAR,
    COMPOSE_FILE,
    CPU_OVERRIDE,
    DEPLOYMENT_DOC,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    ENV_PREFIX,
    EXAMPLE_ENV,
    JUMPBOARD_SERVICES,
    README,
    ROOT,
    InterpolationError,
    _ComposeLoader,
    cpu_stack,
    dockerfile_env,
    dockerfile_instructions,
    dockerfile_values,
    entrypoint,
    parse_jumpboard,
    read_compose,
    service_argv,
    service_env,
    settings_from_env,
    variables_used,
    without_tags,
)

from app.devices import parse_devices
from app.settings import Settings

# ---------------------------------------------------------------------------------------------
# Validation against the Compose specification


def _check_jsonschema(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _doc_compose_snippets() -> list[str]:
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in blocks if block.lstrip().startswith("services:")]


def test_compose_files_follow_the_compose_specification(tmp_path: Path) -> None:
    """docker-compose.yml, the CPU override (tags resolved), the merged CPU stack and the
    compose snippets in docs/deployment.md all validate against the Compose schema."""
    documents = {
        "cpu-override.json": without_tags(read_compose(CPU_OVERRIDE)),
        "cpu-stack.json": without_tags(cpu_stack()),
    }
    for i, snippet in enumerate(_doc_compose_snippets()):
        documents[f"doc-snippet-{i}.json"] = without_tags(yaml.load(snippet, Loader=_ComposeLoader))
    paths = [COMPOSE_FILE]
    for name, document in documents.items():
        path = tmp_path / name
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(path)
    result = _check_jsonschema(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_the_schema_check_catches_a_broken_file(tmp_path: Path) -> None:
    """The validator is not a no-op: a misspelt depends_on condition fails it."""
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace(
        "service_completed_successfully", "service_completed", 1
    )
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken, encoding="utf-8")
    result = _check_jsonschema([path])
    assert result.returncode != 0
    assert "service_completed" in result.stdout + result.stderr


def test_the_database_password_must_be_set() -> None:
    """Without POSTGRES_PASSWORD the stack does not start, and the message points at .env."""
    with pytest.raises(InterpolationError, match=r"POSTGRES_PASSWORD: .*\.env"):
        read_compose(COMPOSE_FILE, env={})


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    """Each ${VAR} of the compose files has an entry in .env.example."""
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    used = variables_used(COMPOSE_FILE) | variables_used(CPU_OVERRIDE)
    assert used, "the compose files interpolate nothing?"
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"


# ---------------------------------------------------------------------------------------------
# Commands and settings


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_service_commands_are_valid_jumpboard_command_lines(stack: str) -> None:
    """Every Jumpboard service runs a real subcommand with valid options."""
    compose = read_compose(COMPOSE_FILE) if stack == "gpu" else cpu_stack()
    services = compose["services"]
    parsed = {name: parse_jumpboard(service_argv(services[name])) for name in JUMPBOARD_SERVICES}
    assert (parsed["migrate"].command, parsed["migrate"].action) == ("db", "upgrade")
    assert parsed["api"].command == "serve"
    assert (parsed["api"].host, parsed["api"].port, parsed["api"].no_worker) == (
        "0.0.0.0",
        8000,
        True,
    )
    assert parsed["worker"].command == "worker"
    assert not parsed["worker"].once and not parsed["worker"].exit_when_idle
    # `docker stop` kills after a grace period: the running job goes back to the queue at once.
    assert parsed["worker"].on_sigterm == "hand-back"


def test_the_image_default_command_is_valid() -> None:
    """`docker run jumpboard` (ENTRYPOINT + CMD) is a valid command line."""
    (cmd,) = dockerfile_values("CMD")
    args = parse_jumpboard([*entrypoint(), *json.loads(cmd)])
    assert args.command == "serve"


def test_docs_run_commands_are_valid() -> None:
    """The `docker compose run ... <service> <args>` lines in the docs and compose comments
    parse as jumpboard command lines (the service's entrypoint is `jumpboard`)."""
    pattern = re.compile(
        r"docker compose (?:-f \S+ )*run (?:--?[\w-]+ )*(?:migrate|api|worker) ([^|`\n]+)"
    )
    found = 0
    for path in (DEPLOYMENT_DOC, README, COMPOSE_FILE, ENV_EXAMPLE):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            parse_jumpboard([*entrypoint(), *shlex.split(match[1])])
            found += 1
    assert found >= 3


@pytest.mark.parametrize("stack", ["gpu", "cpu"])
def test_jumpboard_variables_are_valid_settings(stack: str) -> None:
    """Every JUMPBOARD_* variable a service sets is a Settings field with a valid value."""
    compose = read_compose(COMPOSE_FILE) if stack == "gpu" else cpu_stack()
    fields = set(Settings.model_fields)
    for name in JUMPBOARD_SERVICES:
        env = {**dockerfile_env(), **service_env(compose["services"][name])}
        names = {key for key in env if key.startswith(ENV_PREFIX)}
        assert names, f"{name} sets no JUMPBOARD_ variable"
        unknown = {key for key in names if key.removeprefix(ENV_PREFIX).lower() not in fields}
        assert not unknown, f"{name}: not Settings fields: {sorted(unknown)}"
        settings = settings_from_env(env)
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert str(settings.artifact_dir) == env[ARTIFACT_DIR_VAR]


def test_env_example_and_dockerfile_only_set_settings_fields() -> None:
    """JUMPBOARD_* assignments in .env.example (commented or not) and in the Dockerfile are
    Settings fields."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    names = set(re.findall(r"^#?\s*(JUMPBOARD_\w+)=", text, flags=re.M))
    names |= {key for key in dockerfile_env() if key.startswith(ENV_PREFIX)}
    assert names
    fields = set(Settings.model_fields)
    assert {n.removeprefix(ENV_PREFIX).lower() for n in names} <= fields


def test_no_service_gets_an_api_token_from_the_environment() -> None:
    """Tokens live hashed in the database: no compose service carries one."""
    for name, service in read_compose(COMPOSE_FILE)["services"].items():
        assert not [key for key in service_env(service) if "TOKEN" in key], name


# ---------------------------------------------------------------------------------------------
# Structure of the stack


def _depends(service: Mapping[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


def _mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """volume source -> target for the short syntax `source:target`."""
    return dict(tuple(v.split(":")[:2]) for v in service.get("volumes", []))


def test_database_service() -> None:
    """PostgreSQL 16 with a pg_isready health check and its data on a named volume."""
    compose = read_compose(COMPOSE_FILE)
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:16")
    assert db["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    mounts = _mounts(db)
    assert mounts.get("pgdata") == "/var/lib/postgresql/data"
    assert "pgdata" in compose["volumes"]
    assert db["environment"]["POSTGRES_PASSWORD"] == EXAMPLE_ENV["POSTGRES_PASSWORD"]


def test_start_order() -> None:
    """db healthy -> migrate completes -> api and worker start."""
    services = read_compose(COMPOSE_FILE)["services"]
    assert _depends(services["migrate"]) == {"db": "service_healthy"}
    assert _depends(services["api"]) == {"migrate": "service_completed_successfully"}
    assert _depends(services["worker"]) == {"migrate": "service_completed_successfully"}
    assert services["migrate"]["restart"] == "no"


def test_api_service() -> None:
    """The API publishes port 8000 and is health-checked on /healthz with python (no curl)."""
    api = read_compose(COMPOSE_FILE)["services"]["api"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    test = api["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    assert "/healthz" in " ".join(test)
    assert "curl" not in " ".join(test)


@pytest.mark.parametrize("name", ["migrate", "worker"])
def test_services_without_http_disable_the_image_healthcheck(name: str) -> None:
    """The image's /healthz check would mark a worker or the migration unhealthy."""
    service = read_compose(COMPOSE_FILE)["services"][name]
    assert service["healthcheck"] == {"disable": True}


def test_worker_reserves_nvidia_gpus_and_shares_artifacts_with_the_api() -> None:
    """The GPU worker reserves NVIDIA GPUs; api and worker mount one artifacts volume where
    JUMPBOARD_ARTIFACT_DIR points."""
    compose = read_compose(COMPOSE_FILE)
    worker, api = compose["services"]["worker"], compose["services"]["api"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    shared = set(_mounts(worker).items()) & set(_mounts(api).items())
    assert shared, "api and worker share no volume"
    for source in {source for source, _ in shared}:
        assert source in compose["volumes"], f"{source} is not a named volume"
    targets = {target for _, target in shared}
    assert service_env(worker)[ARTIFACT_DIR_VAR] in targets
    assert service_env(api)[ARTIFACT_DIR_VAR] in targets


def test_cpu_variant_has_no_gpu_reservation() -> None:
    """The CPU stack is the same services, without any GPU request, from a separate image."""
    base, cpu = read_compose(COMPOSE_FILE)["services"], cpu_stack()["services"]
    assert set(cpu) == set(base)
    assert "deploy" in base["worker"] and "deploy" not in cpu["worker"]
    assert "nvidia" not in json.dumps(cpu)
    assert service_env(cpu["worker"])["JUMPBOARD_WORKER_DEVICES"] == ""
    assert {cpu[n]["image"] for n in JUMPBOARD_SERVICES} == {"jumpboard:cpu"}
    assert base["worker"]["image"] != cpu["worker"]["image"]
    # The override only changes what it must: the start order and volumes stay.
    for name in JUMPBOARD_SERVICES:
        assert cpu[name]["depends_on"] == base[name]["depends_on"]
        assert cpu[name]["volumes"] == base[name]["volumes"]


# ---------------------------------------------------------------------------------------------
# Dockerfile and build context


def test_dockerfile_base_user_and_entrypoint() -> None:
    """Slim Python 3.11, a non-root runtime user created in the image, `jumpboard` entrypoint."""
    (base,) = dockerfile_values("FROM")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    instructions = dockerfile_instructions()
    keywords = [kw for kw, _ in instructions]
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    last_run = max(i for i, kw in enumerate(keywords) if kw == "RUN")
    user = instructions[last_user][1].split(":")[0]
    assert user not in ("root", "0")
    assert last_user > last_run, "commands after USER would run as root"
    assert any("useradd" in rest and user in rest for rest in dockerfile_values("RUN"))
    assert entrypoint() == ["jumpboard"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "jumpboard" in pyproject["project"]["scripts"]


def test_dockerfile_healthcheck_uses_python_on_healthz() -> None:
    """The image's HEALTHCHECK asks /healthz through python (the slim image has no curl)."""
    (check,) = dockerfile_values("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    assert "/healthz" in command[-1]
    assert "curl" not in check and "wget" not in check


def test_dockerfile_torch_requirement_matches_pyproject() -> None:
    """The image installs torch from the project's own range."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    deps = pyproject["project"]["dependencies"]
    (torch_req,) = [d for d in deps if re.match(r"torch(?![\w-])", d)]
    args = dict(shlex.split(rest)[0].partition("=")[::2] for rest in dockerfile_values("ARG"))
    assert args["TORCH_SPEC"].replace(" ", "") == torch_req.replace(" ", "")
    assert "TORCH_INDEX_URL" in args


def test_dockerfile_copies_what_the_service_needs() -> None:
    """Code, migrations and packaging files are copied, exist, and survive .dockerignore;
    the artifact folder exists in the image and belongs to the runtime user."""
    sources = []
    for rest in dockerfile_values("COPY"):
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        sources += parts[:-1]
    assert {"app", "expansion", "migrations", "pyproject.toml", "README.md"} <= set(sources)
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not [p for p in patterns if fnmatch.fnmatch(source, p)], f"{source} is ignored"
    assert (ROOT / "migrations" / "env.py").is_file()
    artifact_dir = dockerfile_env()[ARTIFACT_DIR_VAR]
    (user,) = dockerfile_values("USER")
    assert any(f"-o {user}" in rest and artifact_dir in rest for rest in dockerfile_values("RUN"))


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    """The build context leaves out the virtualenv, runs, git, caches, test output and .env."""
    patterns = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    required = {".venv", "runs", ".git", ".env", "**/__pycache__", ".pytest_cache"}
    required |= {".ruff_cache", "test-artifacts", "lightning_logs", "*.egg-info"}
    assert required <= patterns, sorted(required - patterns)


# ---------------------------------------------------------------------------------------------
# Documentation


def test_deployment_docs_cover_the_operations() -> None:
    """docs/deployment.md and the README's Deployment section explain the operations."""
    doc = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    for needle in (
        "docker compose up",
        "--scale worker=",
        "JUMPBOARD_DATABASE_URL",
        "JUMPBOARD_WORKER_DEVICES",
        "--devices",
        "docker-compose.cpu.yml",
        "token create",
    ):
        assert needle in doc, needle
    readme = README.read_text(encoding="utf-8")
    assert "## Deployment" in readme
    section = readme[readme.index("## Deployment") :]
    assert "docs/deployment.md" in section and "docker compose up" in section


def test_the_second_worker_owns_another_gpu_and_starts_on_request() -> None:
    """worker-gpu1 (profile second-gpu) runs the same command on a GPU of its own, and both
    workers keep their GPU lock files in one folder on a volume they share (one owner per GPU)."""
    services = read_compose(COMPOSE_FILE)["services"]
    first, second = services["worker"], services["worker-gpu1"]
    assert second["profiles"] == ["second-gpu"] and "profiles" not in first
    assert service_argv(second) == service_argv(first)
    offers = [
        parse_devices(service_env(w)["JUMPBOARD_WORKER_DEVICES"]).gpus for w in (first, second)
    ]
    assert offers[0] and offers[1] and not set(offers[0]) & set(offers[1])
    lock_dirs = {service_env(w)["JUMPBOARD_DEVICE_LOCK_DIR"] for w in (first, second)}
    assert len(lock_dirs) == 1
    (lock_dir,) = lock_dirs
    shared = set(_mounts(first).items()) & set(_mounts(second).items())
    assert any(lock_dir.startswith(target + "/") for _, target in shared), lock_dir
