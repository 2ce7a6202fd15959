"""A sweep's grid expanded into point specs, and the sweep validated as a whole (torch-free).

The points are the base spec (the sweep's own data/model/train/grow/measures fields) with one
value from every grid axis set at its dotted path, in row-major order over the axes as written.
Validation lists every problem at once: each point that fails validation names its grid
coordinates and the field, and `expansion.specs.budget` checks each point's cost.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

from expansion.specs.experiments import GridValue, SweepExperiment, SweepPointExperiment
from expansion.specs.problems import SpecError
from expansion.specs.validation import validate_experiment

POINT_ONLY_PATHS = ("kind", "name", "grid", "sweep_index", "coordinates")
"""Paths a grid axis may not set: they are the sweep's own, not the points'."""


def _describe(coordinates: dict[str, GridValue]) -> str:
    return ", ".join(f"{path}={value}" for path, value in coordinates.items())


def _set_path(raw: dict[str, Any], path: str, value: GridValue) -> str | None:
    """Set `raw[a][b]... = value` for path `a.b...`; a problem line when a parent is no section."""
    parts = path.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return f"grid.{path}: {'.'.join(parts[: depth + 1])} is a value, not a section"
        node = child
    node[parts[-1]] = value
    return None


def _base_raw(sweep: SweepExperiment) -> dict[str, Any]:
    raw = sweep.model_dump(mode="json", exclude={"kind", "grid"})
    if raw.get("grow") is None:
        raw.pop("grow", None)
    return raw


def iter_point_raws(
    sweep: SweepExperiment, paths: list[str] | None = None
) -> Iterator[tuple[dict[str, GridValue], dict[str, Any]]]:
    """(coordinates, raw point spec) of every grid point, row-major over the axes (all of
    them, or only `paths`)."""
    paths = list(sweep.grid) if paths is None else paths
    base = _base_raw(sweep)
    for index, values in enumerate(itertools.product(*(sweep.grid[p] for p in paths))):
        coordinates = dict(zip(paths, values, strict=True))
        raw = copy.deepcopy(base)
        for path, value in coordinates.items():
            _set_path(raw, path, value)
        raw.update(
            kind="sweep_point",
            name=f"{sweep.name or 'sweep'} point {index}"[:120],
            sweep_index=index,
            coordinates=coordinates,
        )
        yield coordinates, raw


def grid_problems(sweep: SweepExperiment) -> list[str]:
    """Every problem of the sweep's grid, one line each: bad axes, and each distinct point
    problem by the first point's index, the field and its coordinates
    (`points.3.model.depth: ... (grid point model.depth=300; 5 points in all)`).

    A sweep without problems keeps its validated points for `expand_sweep`."""
    problems: list[str] = []
    base = _base_raw(sweep)
    good_paths = []
    for path in sweep.grid:
        if path.split(".")[0] in POINT_ONLY_PATHS:
            problems.append(f"grid.{path}: a sweep cannot vary {path.split('.')[0]!r}")
            continue
        problem = _set_path(copy.deepcopy(base), path, None)
        if problem:
            problems.append(problem)
            continue
        if len(set(map(repr, sweep.grid[path]))) != len(sweep.grid[path]):
            problems.append(f"grid.{path}: values must be distinct")
        good_paths.append(path)
    # The same problem at many points (one bad value crossed with every other axis) is one line.
    first: dict[tuple[str, str], tuple[int, dict[str, GridValue]]] = {}
    times: dict[tuple[str, str], int] = {}
    points: list[SweepPointExperiment] = []
    for coordinates, raw in iter_point_raws(sweep, good_paths):
        try:
            point = validate_experiment(raw)
        except SpecError as exc:
            for line in exc.problems:
                field, _, reason = line.partition(": ")
                first.setdefault((field, reason), (raw["sweep_index"], coordinates))
                times[(field, reason)] = times.get((field, reason), 0) + 1
            continue
        assert isinstance(point, SweepPointExperiment)  # raw["kind"] is "sweep_point"
        points.append(point)
    for (field, reason), (index, coordinates) in first.items():
        n = times[(field, reason)]
        more = f"; {n} points in all" if n > 1 else ""
        at = f"(grid point {_describe(coordinates)}{more})" if coordinates else "(every point)"
        problems.append(f"points.{index}.{field}: {reason} {at}")
    if not problems:
        sweep._points = points
    return problems


def expand_sweep(sweep: SweepExperiment) -> list[SweepPointExperiment]:
    """The validated point specs of a sweep, in grid order; raises ValueError naming every
    invalid point (parse_spec has already refused such a sweep). The grid is walked and its
    points validated once per sweep object."""
    if sweep._points is None:
        problems = grid_problems(sweep)
        if problems:
            raise ValueError("\n".join(problems))
    assert sweep._points is not None
    return list(sweep._points)


def describe_point(point: SweepPointExperiment) -> str:
    """`(grid point model.depth=8, train.seed=1)`: where a point sits in its grid."""
    return f"(grid point {_describe(point.coordinates)})"
