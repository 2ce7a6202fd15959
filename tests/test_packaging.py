"""The distribution as pyproject.toml declares it: every package listed, the migrations
shipped, no phantom data files, and every third-party import declared as a dependency.

The wheel itself is built, installed and served by scripts/check_wheel.sh (run by
scripts/test.sh); these checks are the fast, static half.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
FIRST_PARTY = {"app", "expansion", "migrations"}


def package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, from the packages list and package-dir."""
    mapping = SETUPTOOLS.get("package-dir", {})
    out = {}
    for name in SETUPTOOLS["packages"]:
        parent = max(
            (p for p in mapping if name == p or name.startswith(p + ".")), key=len, default=None
        )
        if parent is None:
            folder = ROOT / name.replace(".", "/")
        else:
            folder = ROOT / mapping[parent] / name[len(parent) + 1 :].replace(".", "/")
        out[name] = folder
    return out


def normalize(dist: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def test_every_package_folder_is_listed_and_every_listed_package_exists() -> None:
    listed = package_dirs()
    for name, folder in listed.items():
        assert (folder / "__init__.py").is_file(), f"{name}: no {folder}/__init__.py"
    found = {
        init.parent.resolve()
        for top in ("app", "expansion", "migrations")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = found - {folder.resolve() for folder in listed.values()}
    assert not missing, f"package folders not in [tool.setuptools] packages: {sorted(missing)}"


def test_migrations_ship_as_app_migrations_with_revisions_and_template() -> None:
    assert SETUPTOOLS["package-dir"]["app.migrations"] == "migrations"
    data = SETUPTOOLS["package-data"]["app.migrations"]
    shipped = {
        p.relative_to(ROOT / "migrations")
        for pattern in data
        for p in (ROOT / "migrations").glob(pattern)
    }
    revisions = {
        p.relative_to(ROOT / "migrations") for p in (ROOT / "migrations" / "versions").glob("*.py")
    }
    assert revisions and revisions <= shipped
    assert Path("script.py.mako") in shipped
    assert (ROOT / "migrations" / "env.py").is_file()  # a module of the package


def test_every_package_data_pattern_matches_a_file() -> None:
    """No phantom entries (the old `app/alembic.ini`)."""
    folders = package_dirs()
    for package, patterns in SETUPTOOLS["package-data"].items():
        for pattern in patterns:
            assert list(folders[package].glob(pattern)), f"{package}: {pattern} matches nothing"


def test_migrations_folder_resolves_from_the_package() -> None:
    from app.db.migrate import migrations_dir

    folder = migrations_dir()
    assert (folder / "env.py").is_file() and (folder / "versions").is_dir()


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it, over app/, expansion/ and migrations/."""
    found: dict[str, set[str]] = {}
    for top in ("app", "expansion", "migrations"):
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # Imports only the type checker sees need only a dev dependency.
            typing_only = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
                for inner in ast.walk(node)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    module = name.split(".")[0]
                    if module in FIRST_PARTY or module in sys.stdlib_module_names:
                        continue
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """Declared in the dependencies or in an optional extra of the service (`s3`: imported only
    when the configuration asks for it)."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    requirements = [*PYPROJECT["project"]["dependencies"], *extras["s3"]]
    declared = {requirement_name(r) for r in requirements}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in third_party_imports().items():
        dists = {normalize(d) for d in distributions.get(module, [module])}
        if not dists & declared:
            undeclared[module] = (sorted(dists), sorted(files))
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"


@pytest.mark.parametrize(
    ("package", "bound"),
    [("fastapi", "<1"), ("mnist1d", "<0.1"), ("torch", "<2.15"), ("scipy", "<2")],
)
def test_dependencies_whose_api_broke_have_upper_bounds(package: str, bound: str) -> None:
    (requirement,) = [
        r for r in PYPROJECT["project"]["dependencies"] if requirement_name(r) == package
    ]
    assert bound in requirement.replace(" ", "")


def test_schemathesis_is_pinned_to_the_major_version_the_tests_use() -> None:
    (requirement,) = [
        r
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
        if requirement_name(r) == "schemathesis"
    ]
    major = int(importlib.metadata.version("schemathesis").split(".")[0])
    assert f">={major}" in requirement and f"<{major + 1}" in requirement
