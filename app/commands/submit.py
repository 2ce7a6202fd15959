"""`jumpboard submit SPEC [--server URL] [--token T] [--wait] [--priority N] [--json]`: queue a
job.

The server and token are found as `app.commands.server_discovery` describes (the local `serve`
and its local token by default). With `--wait`, a progress bar runs until the job ends, then
one summary line; the exit status is 0 only on success (README: exit codes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `submit` subcommand."""
    parser = subparsers.add_parser("submit", help="submit a spec to a running server")
    parser.add_argument("spec", metavar="SPEC", type=Path, help="spec file (YAML or JSON)")
    parser.add_argument(
        "--server", default=None, help="server URL (default: JUMPBOARD_SERVER or the local one)"
    )
    parser.add_argument("--token", default=None, help="API token (default: JUMPBOARD_TOKEN)")
    parser.add_argument("--priority", type=int, default=None, help="higher runs first")
    parser.add_argument(
        "--wait", action="store_true", help="show progress until the job ends; exit 0 on success"
    )
    parser.add_argument("--json", action="store_true", help="print the job as JSON")
    parser.add_argument(
        "--base-job",
        type=int,
        default=None,
        metavar="ID",
        help="kind expand: expand the trained network of this finished job (train, expand or "
        "grow) instead of training a base; model, data and train default to that job's",
    )
    parser.set_defaults(handler=handle)


def with_base_job(spec: dict[str, Any], base_job: int | None) -> dict[str, Any]:
    """The spec with `expand.base_job` set from `--base-job`; CliError for another kind."""
    if base_job is None:
        return spec
    if spec.get("kind") != "expand":
        raise CliError(f"--base-job applies to kind expand, not {spec.get('kind', 'train')}")
    if base_job < 1:
        raise CliError("--base-job: a job id is a positive integer")
    expand = spec.get("expand")
    return {
        **spec,
        "expand": {**(expand if isinstance(expand, dict) else {}), "base_job": base_job},
    }


def read_spec_file(path: Path) -> dict[str, Any]:
    """The spec mapping in a YAML or JSON file; CliError naming the problem otherwise.

    Reads at most MAX_SPEC_BYTES (so `/dev/zero` or a pipe fails fast), refuses YAML aliases
    and deep nesting (app.bounded_input)."""
    from app.bounded_input import MAX_SPEC_BYTES, InputError, load_spec_mapping, read_bounded

    try:
        data = read_bounded(path, MAX_SPEC_BYTES)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise CliError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    except InputError as exc:
        raise CliError(f"{path}: {exc}") from None
    try:
        return load_spec_mapping(data, json_only=path.suffix == ".json")
    except InputError as exc:
        raise CliError(f"{path}: {exc}") from None


def upload_local_data(client: Any, spec: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """`spec` with `data: {name: npz|folder, path}` replaced by the uploaded data set (a folder
    is packed as a `.tar.gz` first; a relative path is read from the spec file's folder): a
    server cannot read a path on this machine. Other specs come back unchanged."""
    import tarfile
    import tempfile

    data = spec.get("data")
    if not isinstance(data, dict) or data.get("name") not in ("npz", "folder"):
        return spec
    if not isinstance(data.get("path"), str):
        return spec  # the server names the missing path
    path = Path(data["path"]).expanduser()
    if not path.is_absolute():
        path = spec_path.parent / path
    if not path.exists():
        raise CliError(f"{spec_path}: data.path: {path} does not exist")
    path = path.resolve()  # a link to the data is packed as the data, not as a link
    rest = {k: v for k, v in data.items() if k not in ("name", "path")}
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="jumpboard-upload-") as tmp:
            packed = Path(tmp) / f"{path.name or 'images'}.tar.gz"
            with tarfile.open(packed, "w:gz") as archive:
                archive.add(path, arcname=path.name or "images")
            dataset = client.upload_dataset(packed)
    else:
        dataset = client.upload_dataset(path)
    print(f"uploaded {path} as data set {dataset['id']}", file=sys.stderr)
    return {**spec, "data": {**rest, "name": "uploaded", "id": str(dataset["id"])}}


def handle(args: argparse.Namespace) -> int:
    """Submit the spec; with --wait, follow it to the end. Local `npz`/`folder` data is
    uploaded first and the spec names the uploaded data set."""
    from app.client import ClientError, JumpboardClient
    from app.commands.job_display import describe_job, final_lines, wait_for_job
    from app.commands.server_discovery import (
        EXIT_JOB_UNSUCCESSFUL,
        client_failure,
        resolve_server,
        resolve_token,
    )

    spec = with_base_job(read_spec_file(args.spec), args.base_job)
    server = resolve_server(args.server)
    token = resolve_token(args.token, server)
    if token is None:
        raise CliError(
            f"no API token for {server}: pass --token, set JUMPBOARD_TOKEN, or create one with "
            "`jumpboard token create`"
        )
    started = time.monotonic()
    try:
        with JumpboardClient(server, token) as client:
            spec = upload_local_data(client, spec, args.spec)
            job = client.submit(spec, priority=args.priority)
            if not args.json:
                print(f"job {job['id']} queued: {server}{job['links']['page']}", flush=True)
            if args.wait:
                job = wait_for_job(client, job, show_bar=not args.json)
    except ClientError as exc:
        raise client_failure(exc) from None
    if args.json:
        print(json.dumps(job, indent=2))
    elif args.wait:
        print(f"{describe_job(job)} (waited {time.monotonic() - started:.1f}s)")
        for line in final_lines(job):
            print(line)
    if not args.wait:
        return 0
    return 0 if job["status"] == "succeeded" else EXIT_JOB_UNSUCCESSFUL
