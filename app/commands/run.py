"""`jumpboard run SPEC --out DIR [--data-dir D]`: run an experiment spec in this process.

A progress bar on stderr follows the run; at the end the test risk and error are printed
(and, for `expand`, the per-position table). torch is imported only when this runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `run` subcommand."""
    parser = subparsers.add_parser("run", help="run an experiment spec in this process")
    parser.add_argument("spec", metavar="SPEC", type=Path, help="spec file (YAML or JSON)")
    parser.add_argument("--out", type=Path, required=True, help="output folder of the run")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where MNIST-1D is cached and cifar-10-batches-py is read "
        "(default: JUMPBOARD_DATA_DIR, else ~/.jumpboard/data, the service's folder too)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an earlier result in --out")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="CKPT",
        help="kind expand: start from this trained base checkpoint (e.g. runs/base/base.ckpt) "
        "instead of training the base",
    )
    parser.set_defaults(handler=handle)


class BarReporter:
    """A ProgressReporter drawing a rich progress bar on stderr, with the latest val metrics."""

    def __init__(self, progress: Any) -> None:
        self.bar = progress
        self.task = progress.add_task("starting", total=1.0)
        self.stage = "starting"
        self.latest: dict[str, float] = {}

    def _describe(self) -> str:
        shown = [f"{k} {v:.4f}" for k, v in self.latest.items()]
        return "  ".join([f"{self.stage:<9}", *shown])

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Move the bar and show the stage."""
        self.stage = stage
        self.bar.update(
            self.task, completed=min(max(fraction, 0.0), 1.0), description=self._describe()
        )

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Show the latest validation loss and accuracy next to the bar."""
        if split == "val" and name in ("loss", "accuracy"):
            self.latest[f"val {name}"] = value
            self.bar.update(self.task, description=self._describe())

    def should_stop(self) -> bool:
        """Never asks to stop (Ctrl-C interrupts the run)."""
        return False


def _print_summary(result: dict[str, Any], out: Path) -> None:
    def fmt(key: str) -> str:
        value = result.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    if result.get("kind") == "sweep":
        from expansion.results.sweep_summary import text_table

        print(text_table(result.get("rows") or []))
        print(f"results in {out / 'result.json'} (each point under {out / 'points'})")
        return
    print(
        f"test risk {fmt('test_risk')}  test error {fmt('test_error')}  "
        f"(val risk {fmt('val_risk')}, train risk {fmt('train_risk')})"
    )
    if result.get("kind") == "expand":
        from expansion.results.answer import answer_line
        from expansion.results.report import position_table

        print(position_table(result))
        print(f"results in {out / 'result.json'}")
        print(answer_line(result.get("answer")))
        return
    print(f"results in {out / 'result.json'}")


def handle(args: argparse.Namespace) -> int:
    """Run the spec with a progress bar; print the test risk and error at the end."""
    from app.commands.validate import load_spec_file

    spec = load_spec_file(args.spec)
    if (args.out / "result.json").exists() and not args.force:
        raise CliError(
            f"{args.out} already holds a result (result.json): choose another --out, "
            "or pass --force to overwrite it"
        )
    if spec.kind == "expand" and spec.expand.base_job is not None:
        raise CliError(
            "expand.base_job names a job of the service: submit it (jumpboard submit), or run "
            "here with --base CKPT (that job's base.ckpt) instead"
        )
    if args.base is not None:
        if spec.kind != "expand":
            raise CliError(f"--base applies to kind expand, not {spec.kind}")
        if not args.base.is_file():
            raise CliError(f"--base: no checkpoint file {args.base}")
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from expansion.data.datasets import DataError
    from expansion.distributed.launch import RankFailure, run_on_devices
    from expansion.models.checkpoint import CheckpointError
    from expansion.progress import StopRequested

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            result = run_on_devices(
                spec,
                args.out,
                BarReporter(bar),
                data_dir=args.data_dir,
                base_checkpoint=args.base,
            )
    except (DataError, CheckpointError) as exc:
        raise CliError(str(exc)) from None
    except FloatingPointError as exc:
        raise CliError(f"training diverged: {exc}", code=1) from None
    except StopRequested:
        raise CliError("stopped", code=1) from None
    except RankFailure as exc:
        raise CliError(f"a device process failed: {exc}", code=1) from None
    except OSError as exc:
        raise CliError(f"{exc.strerror or exc}: {exc.filename or args.out}") from None
    except ValueError as exc:
        # Specs that validate can still not fit the data (too few batches for a statistic...).
        if getattr(args, "verbose", False):
            raise
        raise CliError(f"{exc} (rerun with -v for the traceback)", code=1) from None
    _print_summary(result, args.out)
    return 0
