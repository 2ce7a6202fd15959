"""The deployment files (Dockerfile, docker compose files, .env.example, docs) against the code.

No Docker engine runs here, so these checks read the files: each compose file is validated
against the Compose specification's JSON schema (the copy vendored by check-jsonschema), every
service command must parse with the real `jumpboard` argument parser, every `JUMPBOARD_*`
variable must be a field of `Settings` (and its value valid there), and the structure the
deployment relies on (health checks, start order, GPU reservation, volumes, non-root user)
must be in place. `test_compose_smoke.py` imports the readers below to run the same commands.
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

from app.cli import build_parser
from app.devices import parse_devices
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
README = ROOT / "README.md"

EXAMPLE_ENV = {"POSTGRES_PASSWORD": "example-password"}
"""What a filled-in `.env` must define at least; every other variable has a default."""
JUMPBOARD_SERVICES = ("migrate", "api", "worker")
ENV_PREFIX = "JUMPBOARD_"
ARTIFACT_DIR_VAR = "JUMPBOARD_ARTIFACT_DIR"

# ---------------------------------------------------------------------------------------------
# Readers of the compose files and the Dockerfile (test_compose_smoke.py uses them too)


class ComposeTag:
    """A value tagged `!reset` (remove the key) or `!override` (replace it) in an override."""

    def __init__(self, value: Any, remove: bool) -> None:
        self.value = value
        self.remove = remove


class _ComposeLoader(yaml.SafeLoader):
    """The safe YAML loader plus Compose's merge tags."""


def _tagged(remove: bool) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> ComposeTag:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]
        return ComposeTag(value, remove)

    return construct


_ComposeLoader.add_constructor("!reset", _tagged(remove=True))
_ComposeLoader.add_constructor("!override", _tagged(remove=False))


class InterpolationError(ValueError):
    """A `${VAR:?message}` variable is unset or empty."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$` resolved."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"]
        present = name in env
        value = env.get(name, "")
        if op == ":-":
            return value or arg
        if op == "-":
            return value if present else arg
        if (op == ":?" and not value) or (op == "?" and not present):
            raise InterpolationError(f"{name}: {arg}")
        return value

    return _VARIABLE.sub(substitute, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """`node` with every string value interpolated (keys are left alone, as Compose does)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, ComposeTag):
        return ComposeTag(interpolate_tree(node.value, env), node.remove)
    return node


def variables_used(path: Path) -> set[str]:
    """Names of the variables a compose file interpolates."""
    text = path.read_text(encoding="utf-8")
    return {m["name"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def read_compose(path: Path, env: Mapping[str, str] = EXAMPLE_ENV) -> dict[str, Any]:
    """A compose file as data, interpolated with `env` (merge tags kept as ComposeTag)."""
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)
    return interpolate_tree(raw, env)


# Compose replaces these sequences on merge instead of appending to them.
_REPLACED_SEQUENCES = frozenset({"command", "entrypoint", "test"})


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The model of `docker compose -f base -f override`: mappings merge, tags reset/replace.

    Sequences append, except commands and health-check tests; the uniqueness rules Compose
    applies to ports and volumes are not modelled (the override files set neither).
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, ComposeTag):
            if value.remove:
                merged.pop(key, None)
            else:
                merged[key] = without_tags(value.value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_compose(merged[key], value)
        elif (
            isinstance(value, list)
            and isinstance(merged.get(key), list)
            and key not in _REPLACED_SEQUENCES
        ):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def without_tags(node: Any) -> Any:
    """`node` as plain data: `!reset` keys dropped, `!override` values unwrapped."""
    if isinstance(node, dict):
        return {
            key: without_tags(value.value if isinstance(value, ComposeTag) else value)
            for key, value in node.items()
            if not (isinstance(value, ComposeTag) and value.remove)
        }
    if isinstance(node, list):
        return [without_tags(item) for item in node]
    return node


def cpu_stack(env: Mapping[str, str] = EXAMPLE_ENV) -> dict[str, Any]:
    """The merged model of docker-compose.yml with the CPU override."""
    return merge_compose(read_compose(COMPOSE_FILE, env), read_compose(CPU_OVERRIDE, env))


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if stripped.endswith("\\"):
            continue
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction, in order."""
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    """The variables the image's ENV instructions set."""
    env: dict[str, str] = {}
    for rest in dockerfile_values("ENV"):
        for item in shlex.split(rest):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT (exec form)."""
    (value,) = dockerfile_values("ENTRYPOINT")
    return json.loads(value)


def service_argv(service: Mapping[str, Any]) -> list[str]:
    """The full command line a service runs: entrypoint plus command."""
    entry = service.get("entrypoint", entrypoint())
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    return [*(shlex.split(entry) if isinstance(entry, str) else entry), *command]


def parse_jumpboard(argv: list[str]) -> Any:
    """The parsed arguments of a `jumpboard ...` command line; fails the test if invalid."""
    assert argv and argv[0] == "jumpboard", f"not a jumpboard command: {argv}"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"invalid jumpboard command line: {shlex.join(argv)}")


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment` as a mapping of strings (list or mapping form)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings built from the `JUMPBOARD_*` entries of `env` (they win over the process env)."""
    fields = {
        key.removeprefix(ENV_PREFIX).lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX)
    }
    return Settings(**fields)  # type: ignore[arg-type]


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
