"""Readers of the deployment files (docker-compose.yml with its CPU override, the Dockerfile):
compose interpolation and merging as Docker Compose does them, each service's jumpboard command
line and environment. Used by the deployment-file checks and the compose smoke test."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
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


class ComposeTag:
    """A value tagged `!reset` (remove the key) or `!override` (replace it) in an override."""

    def __init__(self, value: Any, remove: bool) -> None:
        self.value = value
        self.remove = remove


class _ComposeLoader(yaml.SafeLoader):
    """The safe YAML loader plus Compose's merge tags."""


def _tagged(remove: bool) -> Callable[[yaml.SafeLoader, yaml.Node], ComposeTag]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> ComposeTag:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]  # the last kind: scalar
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
    compose: dict[str, Any] = interpolate_tree(raw, env)
    return compose


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
    argv: list[str] = json.loads(value)
    return argv


def service_argv(service: Mapping[str, Any]) -> list[str]:
    """The full command line a service runs: entrypoint plus command."""
    entry = service.get("entrypoint", entrypoint())
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    return [*(shlex.split(entry) if isinstance(entry, str) else entry), *command]


def parse_jumpboard(argv: list[str]) -> argparse.Namespace:
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
    return Settings(**fields)  # type: ignore[arg-type]  # strings: pydantic parses the types
