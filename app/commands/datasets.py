"""`jumpboard datasets upload|list|show|delete`: a running server's uploaded data sets.

Finds the server and token like `submit`; `--json` prints JSON. Exit statuses are the README's:
0 done, 1 refused by the server (with its reason), 2 bad arguments, 3 server unreachable.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.cli import CliError


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, help="server URL (default: the local server)")
    parser.add_argument("--token", default=None, help="API token (default: JUMPBOARD_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def register(subparsers: Any) -> None:
    """Add the `datasets` subcommand and its actions."""
    parser = subparsers.add_parser("datasets", help="upload, list, show, delete data sets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    upload = actions.add_parser("upload", help="upload a .npz or an image folder archive")
    upload.add_argument("file", type=Path, metavar="FILE", help=".npz, .tar, .tar.gz or .zip")
    _client_options(upload)
    upload.set_defaults(handler=handle_upload)
    listing = actions.add_parser("list", help="uploaded data sets, newest first")
    _client_options(listing)
    listing.set_defaults(handler=handle_list)
    for name, handler, text in (
        ("show", handle_show, "one data set"),
        ("delete", handle_delete, "delete a data set (refused while a job uses it)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("ref", metavar="ID", help="the data set's id or sha256")
        _client_options(action)
        action.set_defaults(handler=handler)


def _with_client(args: argparse.Namespace, action: Callable[[Any], Any]) -> Any:
    from app.client import ClientError, JumpboardClient
    from app.commands.server_discovery import client_failure, resolve_server, resolve_token

    server = resolve_server(args.server)
    token = resolve_token(args.token, server)
    try:
        with JumpboardClient(server, token) as client:
            return action(client)
    except ClientError as exc:
        raise client_failure(exc) from None


def describe(dataset: dict[str, Any]) -> str:
    """One data set as a few lines of text."""
    shape = "x".join(str(n) for n in dataset["input_shape"])
    return (
        f"data set {dataset['id']}: {dataset['name']} ({dataset['format']}, "
        f"{dataset['size_bytes']:,} bytes)\n"
        f"  samples {shape}, {dataset['num_classes']} classes, {dataset['train_size']} train / "
        f"{dataset['val_size']} val / {dataset['test_size']} test, model {dataset['model_kind']}\n"
        f"  sha256 {dataset['sha256']}\n"
        f'  in a spec: data: {{name: uploaded, id: "{dataset["id"]}"}}'
    )


def _print(args: argparse.Namespace, dataset: dict[str, Any]) -> None:
    print(json.dumps(dataset, indent=2) if args.json else describe(dataset))


def handle_upload(args: argparse.Namespace) -> int:
    """Upload the file and print the stored data set."""
    if not args.file.is_file():
        raise CliError(f"{args.file}: no such file")
    _print(args, _with_client(args, lambda c: c.upload_dataset(args.file)))
    return 0


def handle_list(args: argparse.Namespace) -> int:
    """Print the uploaded data sets."""
    items = _with_client(args, lambda c: c.datasets())
    if args.json:
        print(json.dumps(items, indent=2))
    elif not items:
        print("no data sets")
    else:
        print("\n".join(describe(d) for d in items))
    return 0


def handle_show(args: argparse.Namespace) -> int:
    """Print one data set."""
    _print(args, _with_client(args, lambda c: c.dataset(args.ref)))
    return 0


def handle_delete(args: argparse.Namespace) -> int:
    """Delete one data set and print what was deleted."""
    _print(args, _with_client(args, lambda c: c.delete_dataset(args.ref)))
    return 0
