"""`jumpboard validate SPEC`: check a spec file and list every problem, one line each.

A valid spec prints a summary and its compute-cost estimate; an invalid one prints one line
per problem (`field.path: reason`) and exits with status 1. torch is never imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `validate` subcommand."""
    parser = subparsers.add_parser("validate", help="check a spec file; list every problem")
    parser.add_argument("spec", metavar="SPEC", type=Path, help="spec file (YAML or JSON)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"valid", "problems", "spec", "cost"} as JSON (exit 1 when invalid)',
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="CKPT",
        help="kind expand: also check this base checkpoint against the spec (model and data "
        "splits, as `run --base` would) without training anything",
    )
    parser.set_defaults(handler=handle)


def read_resolved_spec(path: Path) -> Any:
    """The raw spec in a file, with `data: {name: npz|folder, path}` filled from the data (its
    shape, classes and sizes; a relative path is read from the spec file's folder); the data's
    problem becomes one `data.path: reason` line and a CliError (status 1)."""
    from app.commands.submit import read_spec_file
    from expansion.userdata.arrays import DataProblem
    from expansion.userdata.reading import resolve_local_data

    raw = read_spec_file(path)
    try:
        return resolve_local_data(raw, base_dir=path.parent)
    except DataProblem as exc:
        print(f"{path}: data.path: {exc.reason}")
        raise CliError(f"{path}: the data cannot be used", code=1) from None


def check_base(spec: Any, path: Path) -> None:
    """CliError naming what differs when the checkpoint at `path` cannot serve as the spec's
    base (the checks `run --base` makes when it loads it)."""
    if spec.kind != "expand":
        raise CliError(f"--base applies to kind expand, not {spec.kind}")
    if not path.is_file():
        raise CliError(f"--base: no checkpoint file {path}")
    import torch

    from expansion.experiments.expand_base import load_base
    from expansion.models.checkpoint import CheckpointError

    try:
        load_base(path, spec, torch.device("cpu"))
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def load_spec_file(path: Path) -> Any:
    """The validated experiment spec in a YAML/JSON file.

    Raises CliError for an unreadable file or bad YAML/JSON; for an invalid spec, prints each
    problem as `path: field: reason` and raises CliError (status 1) counting them.
    """
    from expansion.specs.parsing import parse_spec
    from expansion.specs.problems import SpecError

    try:
        return parse_spec(read_resolved_spec(path))
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}")
        noun = "problem" if len(exc.problems) == 1 else "problems"
        raise CliError(f"{path}: {len(exc.problems)} {noun}", code=1) from None


def describe_cost(spec: Any) -> list[str]:
    """Human-readable lines of the spec's compute-cost estimate."""
    from expansion.specs.cost import estimate_cost

    cost = estimate_cost(spec)
    return [
        f"parameters:        {cost.parameters:,}",
        f"forward FLOPs:     {cost.flops_per_sample:,} per sample",
        f"activation memory: {cost.activation_bytes_per_sample / 1024:,.1f} KiB per sample",
        f"training samples:  {cost.train_samples:,} per epoch",
        f"total compute:     {cost.train_flops / 1e12:,.3f} TFLOP",
    ]


def _handle_json(path: Path) -> int:
    import json

    from expansion.specs.cost import estimate_cost
    from expansion.specs.parsing import parse_spec
    from expansion.specs.problems import SpecError

    try:
        spec = parse_spec(read_resolved_spec(path))
    except SpecError as exc:
        print(json.dumps({"valid": False, "problems": exc.problems}, indent=2))
        return 1
    report = {
        "valid": True,
        "problems": [],
        "spec": spec.model_dump(mode="json"),
        "cost": estimate_cost(spec).to_dict(),
    }
    print(json.dumps(report, indent=2))
    return 0


def handle(args: argparse.Namespace) -> int:
    """Validate the spec; print the problems (status 1) or a summary with the cost (status 0)."""
    if args.json:
        return _handle_json(args.spec)
    spec = load_spec_file(args.spec)
    if getattr(args, "base", None) is not None:
        check_base(spec, args.base)
    m = spec.model
    print(
        f"{args.spec}: valid {spec.kind} spec: {m.kind} width {m.width} depth {m.depth}"
        f"{f' x {m.stages} stages' if m.stages > 1 else ''}, {m.norm} norm, "
        f"{m.scaling} scaling on {spec.data.name}, {spec.train.epochs} epochs"
    )
    if spec.kind == "sweep":  # the fields above are the base; the grid varies them
        print(f"  grid:              {spec.grid_size} points over {', '.join(spec.grid)}")
    for line in describe_cost(spec):
        print(f"  {line}")
    return 0
