"""The worker: claims jobs from the queue and runs each in a forked child process.

The science stack (`expansion.experiments`, i.e. torch and lightning) is imported once, by a
single-threaded fork server started on the first job (`multiprocessing`'s forkserver with that
module preloaded); every job is a child forked from it after those imports, pinned to the
worker's GPUs through `CUDA_VISIBLE_DEVICES`. Forking from the fork server rather than from
this process matters: the worker (and `jumpboard serve`, which runs it in a thread) has other
threads, and a fork while one of them holds a lock deadlocks the child. So this process never
imports torch at all, let alone initializes CUDA. The parent heartbeats the lease, writes progress
and metrics in lease-guarded batches, watches for cancel requests, and turns every way a child
can end (result, exception, NaN loss, out of memory, crash) into the job's final state, so one
bad job never takes the worker down.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import queue
from app.artifacts import ArtifactStoreError, artifact_store
from app.artifacts.local import LocalArtifactStore
from app.db.enums import JobStatus
from app.db.retry import call_with_retry, is_connection_error
from app.db.session import session_factory
from app.devices import DeviceLocks, parse_devices
from app.queue import sweeps
from app.queue.wakeups import Wakeups
from app.settings import Settings
from app.worker import registry
from app.worker.child import child_main, run_experiment_runner
from app.worker.pending_results import (
    PENDING_RESULT_FILE,
    KeptResult,
    recover_kept_results,
    write_kept_result,
)
from app.worker.publishing import publish_attempt

log = logging.getLogger(__name__)

Runner = Callable[..., dict[str, Any]]
"""`runner(spec, out_dir, reporter, *, data_dir) -> result`, like `run_experiment`."""

SHUTDOWN_RETRY_S = 30.0
"""How long a stopping worker keeps trying to remove its registry row (then the row is pruned
as a dead worker's after a lease)."""


def _one_try() -> bool:
    """`give_up` for calls whose retry is their next turn (heartbeats, registry touches)."""
    return True


class OutcomeStatus(enum.StrEnum):
    """How a job run ended for the worker: a final job status, or handed back, or lost."""

    SUCCEEDED = JobStatus.SUCCEEDED.value
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value
    RELEASED = "released"
    """Handed back to the queue (worker shutting down)."""
    LOST = "lost"
    """The lease was lost (or could not be written before it ended): another run owns the job."""


@dataclass
class JobOutcome:
    """How one job run ended, as seen by the parent."""

    status: OutcomeStatus
    reason: str = ""
    recorded: bool = True
    """False when the final write was refused because the lease was lost."""


@dataclass
class _Supervision:
    """Mutable state of the parent while one child runs."""

    progress: float | None = None
    stage: str | None = None
    message: str | None = None
    metrics: list[queue.MetricPoint] = field(default_factory=list)
    final: tuple[Any, ...] | None = None
    stop_sent_at: float | None = None
    stop_cause: str | None = None


def local_dataset_path(spec: dict[str, Any], dataset_dir: Path) -> dict[str, Any]:
    """`spec` reading an uploaded data set from this worker's own data set folder, where the
    stored file is (the API resolved the path on its host; a worker may mount the shared
    artifact folder elsewhere). Unchanged when the file is not there."""
    data = spec.get("data")
    if not isinstance(data, dict) or data.get("name") != "uploaded":
        return spec
    if not isinstance(data.get("path"), str) or not isinstance(data.get("sha256"), str):
        return spec
    local = dataset_dir / Path(data["path"]).name
    if not local.name.startswith(data["sha256"]) or not local.is_file():
        return spec
    return {**spec, "data": {**data, "path": str(local)}}


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def crash_reason(exitcode: int | None) -> str:
    """Why a child that sent no outcome ended, from its exit code."""
    if exitcode is None:
        return "job process did not exit"
    if exitcode < 0:
        name = _signal_name(exitcode)
        hint = " (out of memory or killed)" if name == "SIGKILL" else ""
        return f"job process was killed by {name}{hint} before reporting a result"
    hint = " (out of memory or killed)" if exitcode == 137 else ""
    return f"job process exited with code {exitcode}{hint} before reporting a result"


JOB_PRELOAD = ["app.worker.forkserver"]
"""Imported once by the fork server: the job libraries (torch, lightning, scikit-learn), after
which the server freezes the garbage collector's view of them (see `app.worker.forkserver`)."""


def job_process_context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context jobs run in: forked from a warm, single-threaded server."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(JOB_PRELOAD)  # takes effect when the server first starts
    return ctx


def _exit_at_once() -> None:
    """Target of the fork server probe: a child that leaves without running any finalizer."""
    os._exit(0)


def wait_for_fork_server() -> float:
    """Start the fork server if needed and wait until it has finished its preload imports;
    returns the seconds waited.

    `ensure_running()` returns as soon as the server process exists, while it still imports
    torch (seconds, more on a loaded machine). Forking a probe child blocks until the server
    accepts requests, which it does only after the imports. A worker that claimed before this
    would spend that time inside its first job's `Process.start()`, heartbeating nothing, and
    could lose a short lease on its first job."""
    started = time.monotonic()
    ctx = job_process_context()
    probe = ctx.Process(target=_exit_at_once, name="jumpboard-fork-server-probe")
    probe.start()
    probe.join()
    return time.monotonic() - started


class Worker:
    """One worker: a claim -> run -> complete/fail loop over a database, one job at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        runner: Runner | None = None,
        devices: str | None = None,
        poll_seconds: float = 2.0,
        worker_id: str | None = None,
        stop_grace_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.offer = parse_devices(settings.worker_devices if devices is None else devices)
        self.devices = str(self.offer)
        """What the registry shows: GPU indices, `cpu:N`, or empty (the default device)."""
        self.runner: Runner = runner or run_experiment_runner
        self.poll_seconds = poll_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop_grace_seconds = (
            settings.heartbeat_seconds if stop_grace_seconds is None else stop_grace_seconds
        )
        # No liveness ping per use: every queue write retries on connection errors instead.
        self.sessions: sessionmaker[Session] = session_factory(
            settings.database_url, pre_ping=False
        )
        self._stop_claiming = threading.Event()
        self._hand_back = threading.Event()
        self.outcomes: list[tuple[int, JobOutcome]] = []
        self._next_housekeeping = 0.0
        self._device_locks = DeviceLocks(self.offer, settings.device_lock_dir)
        self.artifacts = artifact_store(settings)
        self._idle_touched_at = -float("inf")
        self.wakeups = Wakeups(settings.database_url)
        """Ends an idle wait when a job is queued (PostgreSQL's NOTIFY); polls otherwise."""

    # ------------------------------------------------------------------ control

    def request_stop(self, hand_back: bool = False) -> None:
        """Stop claiming; with `hand_back`, also stop the running job and requeue it."""
        self._stop_claiming.set()
        if hand_back:
            self._hand_back.set()

    def install_signal_handlers(self, *, hand_back_first: bool = False) -> None:
        """SIGTERM/SIGINT once: finish the running job, then exit; twice: hand it back now.
        With `hand_back_first`, the first signal already hands the running job back."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._stop_claiming.is_set() or hand_back_first:
                log.warning("second %s: handing the running job back", signal.strsignal(signum))
                self.request_stop(hand_back=True)
            else:
                log.warning(
                    "%s: finishing the running job, then exiting (again to hand it back)",
                    signal.strsignal(signum),
                )
                self.request_stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # ------------------------------------------------------------------ loop

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Run jobs until stopped (or `max_jobs` ran, or the queue is empty with
        `exit_when_idle`); returns how many jobs ran. Raises DeviceBusy (before anything else)
        when another worker on this host owns one of its GPUs."""
        log.info("worker %s starting (devices %r)", self.worker_id, self.devices or "default")
        self._device_locks.acquire(self.worker_id)
        try:
            return self._run_owning_devices(max_jobs, exit_when_idle)
        finally:
            self._device_locks.release()

    def _run_owning_devices(self, max_jobs: int | None, exit_when_idle: bool) -> int:
        self.artifacts.check()  # a store it cannot use stops the worker, not its jobs
        waited = wait_for_fork_server()  # pay for the imports before the first claim
        log.info("worker %s: job fork server ready after %.2f s", self.worker_id, waited)
        # Listed only once it can run jobs: a live worker is one that claims. Waits for a
        # database that is down (a stop request ends the wait, raising its error).
        host, pid = socket.gethostname(), os.getpid()
        try:
            call_with_retry(
                lambda _retried: registry.register_worker(
                    self.sessions, self.worker_id, host, pid, self.devices
                ),
                "registering the worker",
                give_up=self._stop_claiming.is_set,
                wake=self._stop_claiming,
            )
        except SQLAlchemyError:
            if not self._stop_claiming.is_set():
                raise
            log.info("worker %s stopped before the database was reachable", self.worker_id)
            return 0
        self._recover_kept_results()
        ran = 0
        try:
            while not self._stop_claiming.is_set() and (max_jobs is None or ran < max_jobs):
                try:
                    claim = call_with_retry(
                        self._claim,
                        "claiming",
                        give_up=self._stop_claiming.is_set,
                        wake=self._stop_claiming,
                    )
                except SQLAlchemyError as exc:  # a refused statement, or stopped during an outage
                    log.error("claim failed (%s); retrying", exc.__class__.__name__)
                    self._stop_claiming.wait(self.poll_seconds)
                    continue
                if claim is None:
                    if exit_when_idle:
                        break
                    self._idle_wait()
                    continue
                ran += 1
                self._touch(claim.job_id)
                outcome = self.run_claimed(claim)
                self._refresh_sweep_of(claim.job_id)
                self.outcomes.append((claim.job_id, outcome))
                self._touch(None)
        finally:
            self.wakeups.close()
            give_up_at = time.monotonic() + SHUTDOWN_RETRY_S
            try:
                call_with_retry(
                    lambda _retried: registry.unregister_worker(self.sessions, self.worker_id),
                    "unregistering the worker",
                    give_up=lambda: time.monotonic() >= give_up_at,
                )
            except SQLAlchemyError:
                log.warning("could not unregister worker %s", self.worker_id)
            log.info("worker %s stopped after %d job(s)", self.worker_id, ran)
        return ran

    def _recover_kept_results(self) -> None:
        """Store the results a worker that died kept through an outage in the local artifact
        folder (`app.worker.pending_results`); the object store's scratch folders are private
        to the worker that wrote them."""
        if not isinstance(self.artifacts, LocalArtifactStore):
            return
        try:
            call_with_retry(
                lambda _retried: recover_kept_results(self.sessions, self.settings.artifact_dir),
                "storing results kept by a stopped worker",
                give_up=self._stop_claiming.is_set,
                wake=self._stop_claiming,
            )
        except SQLAlchemyError as exc:  # a refused statement: the files stay for later
            log.error("could not store kept results: %s", exc)

    def _idle_wait(self) -> None:
        # The registry row says the worker is alive; an idle worker refreshes it once per
        # heartbeat interval, not after every claim that found nothing: a NOTIFY wakes every
        # listening worker at once, and all but one find nothing.
        now = time.monotonic()
        if now - self._idle_touched_at >= self.settings.heartbeat_seconds:
            self._touch(None)
            self._idle_touched_at = now
        # Listening, a queued job ends the wait: poll only as often as housekeeping needs
        # (expired leases, dead workers), a quarter lease, so idle workers cost the database
        # little. Otherwise poll every `poll_seconds`.
        listening = max(self.poll_seconds, self.settings.lease_seconds / 4)
        self.wakeups.wait(self.poll_seconds, self._stop_claiming, listening_seconds=listening)

    def _claim(self, _retried: bool) -> queue.ClaimedJob | None:
        """Housekeeping when due, then one claim (a retried claim may have committed: its job
        keeps the lost claim's lease until it expires and is then requeued)."""
        self._housekeeping()
        return queue.claim_next_job(
            self.sessions, self.worker_id, self.settings.lease_seconds, capacity=self.offer.count
        )

    def _refresh_sweep_of(self, job_id: int) -> None:
        # A sweep's status follows its points; a point just ended.
        try:
            call_with_retry(
                lambda _retried: sweeps.refresh_parent_of(self.sessions, job_id),
                "refreshing a sweep",
                give_up=_one_try,  # housekeeping refreshes every open sweep later anyway
            )
        except SQLAlchemyError as exc:
            if not is_connection_error(exc):  # an outage is logged once, by the retry policy
                log.warning("could not refresh the sweep of job %s", job_id)

    def _housekeeping(self) -> None:
        """Settle expired leases and drop dead workers' rows, at most every quarter lease (5 s
        at most): a busy worker's claims then cost one round trip, not six."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        queue.reclaim_expired(self.sessions)
        sweeps.refresh_open_sweeps(self.sessions)
        registry.prune_dead_workers(self.sessions, registry.stale_after(self.settings))
        self._next_housekeeping = now + min(self.settings.lease_seconds / 4, 5.0)

    def _touch(self, job_id: int | None) -> None:
        try:
            call_with_retry(
                lambda _retried: registry.touch_worker(self.sessions, self.worker_id, job_id),
                "updating the worker's row",
                give_up=_one_try,
            )
        except SQLAlchemyError as exc:
            if not is_connection_error(exc):  # an outage is logged once, by the retry policy
                log.warning("could not update worker row")

    # ------------------------------------------------------------------ one job

    def run_claimed(self, claim: queue.ClaimedJob) -> JobOutcome:
        """Run one claimed job in a forked child and record how it ended. Never raises: a job
        that cannot even be started (job folder not writable, disk full, no process) fails."""
        out_dir = self.artifacts.scratch_dir(claim.job_id, claim.attempt)
        try:
            return self._run_in(claim, out_dir)
        finally:
            self.artifacts.release_scratch(out_dir)

    def _run_in(self, claim: queue.ClaimedJob, out_dir: Path) -> JobOutcome:
        try:
            process, parent_conn = self._start_child(claim, out_dir)
        except Exception as exc:  # outside the child: the job fails, the worker goes on
            log.exception("job %s: could not start", claim.job_id)
            return self._fail_unrecorded(
                claim, f"could not start the job: {type(exc).__name__}: {exc}"
            )
        log.info("job %s running in process %s", claim.job_id, process.pid)
        try:
            state = self._supervise(claim, process, parent_conn)
        finally:
            if process.is_alive():
                process.kill()
            process.join(5)
            parent_conn.close()
        try:
            return self._record(claim, state, process.exitcode, out_dir)
        except Exception as exc:  # a result the database or the disk refuses
            log.exception("job %s: could not record its outcome", claim.job_id)
            return self._fail_unrecorded(
                claim, f"could not store the job's outcome: {type(exc).__name__}: {exc}", exc
            )

    def _start_child(
        self, claim: queue.ClaimedJob, out_dir: Path
    ) -> tuple[multiprocessing.process.BaseProcess, Any]:
        if out_dir.exists():
            shutil.rmtree(out_dir)  # files of an earlier, abandoned attempt
        out_dir.mkdir(parents=True)
        ctx = job_process_context()
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=child_main,
            args=(
                child_conn,
                self.runner,
                local_dataset_path(claim.spec, self.settings.dataset_dir),
                out_dir,
                self.settings.data_dir,
                self.offer.cuda_visible_devices,
            ),
            name=f"jumpboard-job-{claim.job_id}",
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()
        return process, parent_conn

    def _fail_unrecorded(
        self, claim: queue.ClaimedJob, reason: str, cause: BaseException | None = None
    ) -> JobOutcome:
        """Fail the job for good with `reason`, unless the database connection itself failed
        (then the job keeps its lease until it expires and is run again)."""
        if cause is not None and is_connection_error(cause):
            return JobOutcome(OutcomeStatus.LOST, f"database unreachable: {reason}", False)
        try:
            ok = queue.fail_job(self.sessions, claim, reason)
        except SQLAlchemyError:
            log.exception("job %s: could not mark it failed", claim.job_id)
            ok = False
        return JobOutcome(OutcomeStatus.FAILED, reason, recorded=ok)

    def _supervise(
        self,
        claim: queue.ClaimedJob,
        process: multiprocessing.process.BaseProcess,
        conn: Any,
    ) -> _Supervision:
        state = _Supervision()
        flush_every = min(self.settings.metrics_flush_seconds, self.settings.heartbeat_seconds)
        next_flush = time.monotonic() + flush_every
        while True:
            self._drain(conn, state, wait=0.2)
            if state.final is not None:
                return state
            if not process.is_alive():
                self._drain(conn, state, wait=0.0)
                return state
            now = time.monotonic()
            if self._hand_back.is_set() and state.stop_cause is None:
                self._send_stop(conn, state, "released")
            if now >= next_flush and state.stop_cause != "lost":
                next_flush = now + flush_every
                self._flush(claim, state, conn)
            sent = state.stop_sent_at
            if sent is not None and now - sent > self.stop_grace_seconds:
                log.warning("job %s did not stop in time; killing its process", claim.job_id)
                process.kill()
                process.join(5)
                self._drain(conn, state, wait=0.0)
                return state

    def _flush(self, claim: queue.ClaimedJob, state: _Supervision, conn: Any) -> None:
        try:
            held = call_with_retry(
                lambda _retried: queue.heartbeat(
                    self.sessions,
                    claim,
                    state.progress,
                    state.stage,
                    message=state.message,
                    metrics=state.metrics,
                ),
                f"heartbeating job {claim.job_id}",
                give_up=_one_try,  # retried at the next flush, while the child's pipe is drained
            )
        except SQLAlchemyError as exc:
            # Keep the points; the lease survives until it expires, the next flush may work.
            if not is_connection_error(exc):
                log.error("job %s: heartbeat failed (%s)", claim.job_id, type(exc).__name__)
            return
        state.metrics = []
        if held:
            self._touch(claim.job_id)
        if not held:
            self._send_stop(conn, state, "lost")
        elif claim.cancel_requested and state.stop_cause is None:
            log.info("job %s: cancel requested; stopping it", claim.job_id)
            self._send_stop(conn, state, "cancelled")

    def _keep_result(
        self,
        claim: queue.ClaimedJob,
        result: dict[str, Any],
        out_dir: Path,
        metrics: list[queue.MetricPoint],
        artifacts: list[dict[str, Any]],
    ) -> JobOutcome:
        """Keep a finished result through a database outage longer than the lease: in memory
        and in the job's folder (`PENDING_RESULT_FILE`), until the database is back; then store
        it unless another attempt of the job has started since (`queue.store_pending_result`).
        Only a hard stop (hand back) ends the wait; the result then stays on disk."""
        pending = out_dir / PENDING_RESULT_FILE
        kept = KeptResult(claim, result, metrics, artifacts)
        try:
            write_kept_result(pending, kept)
        except OSError as exc:  # memory still holds it
            log.warning("job %s: could not write %s: %s", claim.job_id, pending, exc)
        log.warning(
            "job %s finished while the database is unreachable and its lease is over: "
            "keeping the result (%s) until the database is back",
            claim.job_id,
            pending,
        )
        stored = call_with_retry(
            lambda _retried: queue.store_pending_result(
                self.sessions, claim, result, metrics=metrics, artifacts=artifacts
            ),
            f"storing the kept result of job {claim.job_id}",
            give_up=self._hand_back.is_set,
            wake=self._hand_back,
        )
        pending.unlink(missing_ok=True)
        if stored is queue.PendingResultOutcome.STORED:
            return JobOutcome(OutcomeStatus.SUCCEEDED, "stored after a database outage")
        return JobOutcome(
            OutcomeStatus.LOST, "another attempt had started; result discarded", False
        )

    @staticmethod
    def _send_stop(conn: Any, state: _Supervision, cause: str) -> None:
        state.stop_cause = cause
        if state.stop_sent_at is None:
            state.stop_sent_at = time.monotonic()
        with contextlib.suppress(OSError):
            conn.send(("stop",))

    @staticmethod
    def _drain(conn: Any, state: _Supervision, wait: float) -> None:
        # Bounded, so that a child flooding metrics cannot starve the heartbeat.
        budget_ends = time.monotonic() + 0.5
        try:
            ready = conn.poll(wait)
            while ready and time.monotonic() < budget_ends:
                message = conn.recv()
                tag = message[0]
                if tag == "progress":
                    state.progress, state.stage, state.message = message[1:4]
                elif tag == "metric":
                    state.metrics.append(tuple(message[1:5]))
                else:
                    state.final = message
                    return
                ready = conn.poll(0)
        except (EOFError, OSError):
            return

    def _record(
        self, claim: queue.ClaimedJob, state: _Supervision, exitcode: int | None, out_dir: Path
    ) -> JobOutcome:
        final = state.final or ("crashed",)  # no final message: the child sent no outcome
        cause = state.stop_cause
        if cause == "lost":
            log.warning("job %s: lease lost; its results are discarded", claim.job_id)
            return JobOutcome(OutcomeStatus.LOST, "lease lost", recorded=False)
        tag = final[0]
        if tag == "done":
            try:
                rows = publish_attempt(
                    self.artifacts,
                    self.sessions,
                    claim,
                    out_dir,
                    final[1],
                    patience_s=self.settings.artifact_upload_patience_seconds,
                    max_delay_s=self.settings.heartbeat_seconds,
                )
            except ArtifactStoreError as exc:  # the run is fine: run it again later
                log.error("job %s: %s; handing it back", claim.job_id, exc)
                ok = queue.release_job(self.sessions, claim)
                return JobOutcome(OutcomeStatus.RELEASED, f"artifact store: {exc}", recorded=ok)
            if rows is None:
                return JobOutcome(OutcomeStatus.LOST, "lease lost waiting for the store", False)
            try:
                ok = queue.complete_job(
                    self.sessions, claim, final[1], metrics=state.metrics, artifacts=rows
                )
            except SQLAlchemyError as exc:
                if not is_connection_error(exc):
                    raise
                # The database is still down and the lease is over: keep the result.
                return self._keep_result(claim, final[1], out_dir, state.metrics, rows)
            if not ok:
                log.warning("job %s: lease lost before its result was stored", claim.job_id)
                return JobOutcome(OutcomeStatus.LOST, "lease lost before completion", False)
            return JobOutcome(OutcomeStatus.SUCCEEDED)
        if cause == "released":
            ok = queue.release_job(self.sessions, claim)
            return JobOutcome(OutcomeStatus.RELEASED, "worker shutting down", recorded=ok)
        if cause == "cancelled":
            ok = queue.mark_cancelled(self.sessions, claim, metrics=state.metrics)
            return JobOutcome(OutcomeStatus.CANCELLED, "cancel requested", recorded=ok)
        if tag == "error":
            reason, trace = final[1], final[2]
            error = f"{reason}\n\n{trace}".strip() if trace else reason
        elif tag == "stopped":
            reason = error = f"stopped unexpectedly: {final[1]}"
        else:
            reason = error = crash_reason(exitcode)
        log.warning("job %s failed: %s", claim.job_id, reason)
        ok = queue.fail_job(
            self.sessions, claim, error, metrics=state.metrics, artifacts=self._kept(claim, out_dir)
        )
        return JobOutcome(OutcomeStatus.FAILED, reason, recorded=ok)

    def _kept(self, claim: queue.ClaimedJob, out_dir: Path) -> list[dict[str, Any]]:
        """The rows of the files a failed attempt keeps (a trained base), put in the artifact
        store; none when the store refuses them (the failure itself is still recorded)."""
        try:
            records = self.artifacts.publish(
                claim.job_id, claim.attempt, out_dir, queue.KEPT_ON_FAILURE
            )
        except ArtifactStoreError as exc:
            log.warning("job %s: could not keep its trained base: %s", claim.job_id, exc)
            return []
        return [record.as_row() for record in records]


SUPERVISOR_FIRST_DELAY_S = 1.0
"""Wait before the first restart of an in-process worker loop that died."""
SUPERVISOR_MAX_DELAY_S = 60.0
"""Longest wait between restarts (the delay doubles after each crash)."""
SUPERVISOR_STABLE_S = 300.0
"""A loop that ran this long before dying restarts after the first delay again."""


class InProcessWorker:
    """A worker loop in a background thread of this process, supervised: a loop that dies of
    an unexpected error (a bug; a database that is down is waited for instead) is logged and
    restarted as a new worker after a backoff, so the jobs it held are reclaimed when their
    leases expire and new jobs keep running. `worker` is the current loop's Worker;
    `restarts` counts the restarts."""

    def __init__(
        self,
        make_worker: Callable[[], Worker],
        *,
        first_delay_s: float = SUPERVISOR_FIRST_DELAY_S,
        max_delay_s: float = SUPERVISOR_MAX_DELAY_S,
    ) -> None:
        self.make_worker = make_worker
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.worker = make_worker()
        self.restarts = 0
        self.last_error: str | None = None
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="jumpboard-worker", daemon=True)

    def start(self) -> None:
        """Start the supervising thread."""
        self.thread.start()

    def _supervise(self) -> None:
        delay = self.first_delay_s
        while True:
            began = time.monotonic()
            try:
                self.worker.run()
                return  # stopped on request
            except Exception as exc:  # whatever killed the loop, the service keeps a worker
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("in-process worker %s died; restarting", self.worker.worker_id)
            if time.monotonic() - began >= SUPERVISOR_STABLE_S:
                delay = self.first_delay_s
            if self._stopping.wait(delay):
                return
            delay = min(2 * delay, self.max_delay_s)
            self.restarts += 1
            self.worker = self.make_worker()
            if self._stopping.is_set():  # stop() raced the restart: do not start the new loop
                return

    def stop(self, timeout: float | None = 30.0, hand_back: bool = True) -> None:
        """Stop claiming; hand the running job back (default) or let it finish; wait."""
        self._stopping.set()
        self.worker.request_stop(hand_back=hand_back)
        self.thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the supervised loop runs (or waits to restart)."""
        return self.thread.is_alive()


def start_in_process_worker(
    settings: Settings, *, runner: Runner | None = None, poll_seconds: float = 1.0
) -> InProcessWorker:
    """Run a supervised worker loop in a daemon thread of this process (the embedded `serve`
    default); jobs still run in forked children."""
    handle = InProcessWorker(lambda: Worker(settings, runner=runner, poll_seconds=poll_seconds))
    handle.start()
    return handle
