"""`jumpboard jobs list|show|cancel|results|download|wait`: the jobs of a running server.

Every action finds the server and token like `submit` (`app.commands.server_discovery`), takes
`--server`/`--token`, and prints JSON with `--json` (for scripts). Exit statuses are the
README's: 0 done, 1 refused by the server or the job ended unsuccessfully, 2 bad arguments,
3 server unreachable, 4 `wait --timeout` ran out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.cli import CliError

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
KINDS = ("train", "expand", "grow")


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, help="server URL (default: the local server)")
    parser.add_argument("--token", default=None, help="API token (default: JUMPBOARD_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def register(subparsers: Any) -> None:
    """Add the `jobs` subcommand and its actions."""
    parser = subparsers.add_parser("jobs", help="list, show, cancel, fetch results of jobs")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status", choices=STATUSES, default=None, help="only this status")
    listing.add_argument("--kind", choices=KINDS, default=None, help="only this kind")
    listing.add_argument("--name", default=None, help="only names containing this text")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _client_options(listing)
    listing.set_defaults(handler=handle_list)

    show = actions.add_parser("show", help="one job in detail")
    show.add_argument("job_id", type=int, metavar="ID")
    _client_options(show)
    show.set_defaults(handler=handle_show)

    cancel = actions.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", type=int, metavar="ID")
    _client_options(cancel)
    cancel.set_defaults(handler=handle_cancel)

    results = actions.add_parser("results", help="a job's result rows as JSON or CSV")
    results.add_argument("job_id", type=int, metavar="ID")
    results.add_argument("--format", choices=("table", "json", "csv"), default="table")
    results.add_argument("--output", "-o", type=Path, default=None, help="write to this file")
    _client_options(results)
    results.set_defaults(handler=handle_results)

    download = actions.add_parser("download", help="download a job's artifacts")
    download.add_argument("job_id", type=int, metavar="ID")
    download.add_argument("names", nargs="*", metavar="NAME", help="only these (default: all)")
    download.add_argument(
        "--dir", type=Path, default=None, help="target folder (default: ./job-ID)"
    )
    _client_options(download)
    download.set_defaults(handler=handle_download)

    wait = actions.add_parser("wait", help="follow a job with a progress bar until it ends")
    wait.add_argument("job_id", type=int, metavar="ID")
    wait.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds (exit 4)"
    )
    _client_options(wait)
    wait.set_defaults(handler=handle_wait)


def _with_client(args: argparse.Namespace, action: Callable[[Any, str], int]) -> int:
    """Run `action(client, server)` against the resolved server; failed requests become one
    line with the README's exit status."""
    from app.client import ClientError, JumpboardClient
    from app.commands.server_discovery import client_failure, resolve_server, resolve_token

    server = resolve_server(args.server)
    token = resolve_token(args.token, server)
    try:
        with JumpboardClient(server, token) as client:
            return action(client, server)
    except ClientError as exc:
        raise client_failure(exc) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def handle_list(args: argparse.Namespace) -> int:
    """Print the matching jobs (a table, or a JSON list)."""
    if not 1 <= args.limit <= 10_000:
        raise CliError("--limit: must be between 1 and 10000")

    def action(client: Any, _server: str) -> int:
        jobs = client.jobs(status=args.status, kind=args.kind, limit=args.limit)
        if args.name:
            jobs = [j for j in jobs if args.name.lower() in (j.get("name") or "").lower()]
        if args.json:
            _print_json(jobs)
            return 0
        if not jobs:
            print("no jobs")
            return 0
        rows = [
            [
                str(j["id"]),
                j["kind"],
                j["status"],
                f"{100 * (j.get('progress') or 0.0):.0f}%",
                j.get("stage") or "",
                (j.get("created_at") or "")[:19].replace("T", " "),
                j.get("name") or "",
            ]
            for j in jobs
        ]
        print(_table(["id", "kind", "status", "progress", "stage", "created", "name"], rows))
        return 0

    return _with_client(args, action)


def handle_show(args: argparse.Namespace) -> int:
    """Print one job in detail."""
    from app.commands.job_display import job_details

    def action(client: Any, server: str) -> int:
        job = client.job(args.job_id)
        if args.json:
            _print_json(job)
        else:
            print("\n".join(job_details(job, server)))
        return 0

    return _with_client(args, action)


def handle_cancel(args: argparse.Namespace) -> int:
    """Ask the server to cancel the job."""
    from app.commands.job_display import describe_job

    def action(client: Any, _server: str) -> int:
        job = client.cancel(args.job_id)
        if args.json:
            _print_json(job)
        else:
            print(describe_job(job) + ("" if job["status"] == "cancelled" else " (stopping)"))
        return 0

    return _with_client(args, action)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _positions_text(job: dict[str, Any]) -> str:
    """An expand job's per-position rows (gain, its interval and the selection-adjusted one,
    certificate verdicts), then a blank line; empty for other jobs."""
    from expansion.results.answer import POSITION_HEADER, position_rows

    rows = position_rows(job.get("answer"))
    if not rows:
        return ""
    return _table(list(POSITION_HEADER), [list(r) for r in rows]) + "\n\nper seed:\n"


def handle_results(args: argparse.Namespace) -> int:
    """Print or save the job's result rows (one per insertion record)."""
    from app.commands.job_display import final_lines

    fmt = "json" if args.json and args.format == "table" else args.format

    def action(client: Any, _server: str) -> int:
        if fmt == "csv":
            text = client.results_csv(args.job_id)
        else:
            job = client.job(args.job_id)  # a 404 names the job rather than printing nothing
            rows = client.results(args.job_id)
            if fmt == "json":
                text = json.dumps({"job_id": args.job_id, "items": rows}, indent=2) + "\n"
            elif not rows:
                text = f"job {args.job_id} has no result rows (yet)\n"
            else:
                keys = ["position", "seed", "certificate_verdict", "certificate_risk_decrease"]
                keys += ["nonzero_gradient", "gain_vs_control", "function_drift_eval"]
                table = [[_fmt(r.get(k)) for k in keys] for r in rows]
                text = _positions_text(job) + _table(keys, table) + "\n"
                text += "".join(f"{line}\n" for line in final_lines(job))
        if args.output is not None:
            try:
                args.output.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0

    return _with_client(args, action)


def handle_download(args: argparse.Namespace) -> int:
    """Download the job's artifacts (all, or the named ones) into a folder."""
    folder: Path = args.dir if args.dir is not None else Path(f"job-{args.job_id}")

    def action(client: Any, _server: str) -> int:
        artifacts = client.artifacts(args.job_id)
        if args.names:
            known = {a["name"] for a in artifacts}
            missing = [n for n in args.names if n not in known]
            if missing:
                listed = ", ".join(sorted(known)) or "none"
                raise CliError(
                    f"job {args.job_id} has no artifact {', '.join(missing)} (it has: {listed})",
                    code=1,
                )
            artifacts = [a for a in artifacts if a["name"] in args.names]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create {folder}: {exc.strerror or exc}") from None
        written = []
        for artifact in artifacts:
            path = client.download(args.job_id, artifact, folder)
            written.append({"name": artifact["name"], "path": str(path), "size": artifact["size"]})
            if not args.json:
                print(f"{path} ({artifact['size']:,} bytes)")
        if args.json:
            _print_json(written)
        elif not written:
            print(f"job {args.job_id} has no artifacts (yet)")
        return 0

    return _with_client(args, action)


def handle_wait(args: argparse.Namespace) -> int:
    """Follow the job until it ends: 0 succeeded, 1 failed or cancelled, 4 timed out."""
    from app.client import TERMINAL_STATUSES
    from app.commands.job_display import describe_job, final_lines, wait_for_job
    from app.commands.server_discovery import EXIT_JOB_UNSUCCESSFUL, EXIT_TIMEOUT

    def action(client: Any, _server: str) -> int:
        job = wait_for_job(
            client, client.job(args.job_id), show_bar=not args.json, timeout=args.timeout
        )
        if args.json:
            _print_json(job)
        else:
            print("\n".join([describe_job(job), *final_lines(job)]))
        if job["status"] not in TERMINAL_STATUSES:
            return EXIT_TIMEOUT
        return 0 if job["status"] == "succeeded" else EXIT_JOB_UNSUCCESSFUL

    return _with_client(args, action)
