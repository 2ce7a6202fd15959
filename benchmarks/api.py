"""Throughput and latency of the REST API against a bare FastAPI JSON endpoint, same run.

Starts two uvicorn servers on loopback in subprocesses (one process each): the Jumpboard app
over a fresh database, and a bare FastAPI app with one GET and one POST JSON endpoint. Then
32 concurrent httpx clients measure

    POST /api/v1/jobs           (validate the spec, check the budget, authenticate, insert)
    GET  /api/v1/jobs/{id}      (authenticate-free read of one row)
    GET  /bare, POST /bare      (the framework's floor: no database, no validation)

and print requests/s, p50 and p99 latency, and the ratio of each Jumpboard figure to the
matching bare one. Clients and servers share the machine's cores, so absolute numbers move
with load; the ratios are the figures to compare.

    .venv/bin/python benchmarks/api.py [--requests 2000] [--concurrency 32]
                                       [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/api.py` puts benchmarks/ first on sys.path, where the queue benchmark's
# queue.py would shadow the standard library's `queue` (which asyncio needs).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import httpx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "kind": "train",
    "name": "bench",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 1},
}


def bare_app() -> object:
    """The baseline: FastAPI with a JSON GET and a JSON POST endpoint, nothing else."""
    from typing import Any

    from fastapi import Body, FastAPI

    app = FastAPI()

    @app.get("/bare")
    def bare_get() -> dict[str, Any]:
        return {"id": 1, "status": "queued", "progress": 0.0}

    @app.post("/bare", status_code=201)
    def bare_post(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"id": 1, "status": "queued", "name": body.get("name", "")}

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None  # stderr=PIPE above
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


@dataclass
class Measurement:
    """Latencies (seconds) and per-round throughputs of one scenario."""

    name: str
    latencies: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def throughput(self) -> float:
        """Median over rounds of requests per second."""
        return statistics.median(self.rounds)

    def quantile(self, q: float) -> float:
        """Latency quantile over every round, in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def _measure(
    into: Measurement,
    client: httpx.AsyncClient,
    request: Request,
    total: int,
    concurrency: int,
    expect: int,
) -> None:
    """One round: `total` requests from `concurrency` clients; adds to `into`."""
    counter = iter(range(total))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in counter:
            start = time.perf_counter()
            try:
                response = await request(client, i)
                ok = response.status_code == expect
            except httpx.HTTPError:
                ok = False
            into.latencies.append(time.perf_counter() - start)
            done += 1
            into.errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    into.rounds.append(done / (time.perf_counter() - start))


async def _run(
    app_url: str, bare_url: str, token: str, total: int, concurrency: int, rounds: int
) -> list[Measurement]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=app_url, limits=limits, timeout=60) as api,
        httpx.AsyncClient(base_url=bare_url, limits=limits, timeout=60) as bare,
    ):
        # Warm-up: connections, imports, caches.
        await _measure(
            Measurement("warm"), api, lambda c, i: c.get("/healthz"), 200, concurrency, 200
        )
        await _measure(
            Measurement("warm"), bare, lambda c, i: c.get("/bare"), 200, concurrency, 200
        )
        created: list[int] = []

        async def post_job(c: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {**SPEC, "name": f"bench-{i}"}
            response = await c.post("/api/v1/jobs", json=body, headers=auth)
            if response.status_code == 201:
                created.append(response.json()["id"])
            return response

        async def get_job(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.get(f"/api/v1/jobs/{created[i % len(created)] if created else 1}")

        scenarios: list[tuple[Measurement, httpx.AsyncClient, Request, int]] = [
            (Measurement("bare POST /bare"), bare, lambda c, i: c.post("/bare", json=SPEC), 201),
            (Measurement("POST /api/v1/jobs"), api, post_job, 201),
            (Measurement("bare GET /bare"), bare, lambda c, i: c.get("/bare"), 200),
            (Measurement("GET /api/v1/jobs/{id}"), api, get_job, 200),
        ]
        # Rounds interleave baseline and service, so that load from other work on the machine
        # falls on both alike.
        per_round = max(1, total // rounds)
        for _ in range(rounds):
            for measurement, client, request, expect in scenarios:
                await _measure(measurement, client, request, per_round, concurrency, expect)
        return [m for m, *_ in scenarios]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    """Run the benchmark and print the table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per scenario")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        import uvicorn

        uvicorn.run(
            bare_app(),  # type: ignore[arg-type]  # typed object: fastapi is imported lazily
            host="127.0.0.1",
            port=args.serve_bare,
            log_level="warning",
            timeout_keep_alive=300,
        )
        return 0

    sys.path.insert(0, str(REPO))
    from app.db.migrate import upgrade
    from app.db.session import session_factory
    from app.tokens import create_token

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        with session_factory(url)() as session:
            _, token = create_token(session, "benchmark")
            session.commit()
        env = {
            **os.environ,
            "JUMPBOARD_DATABASE_URL": url,
            "JUMPBOARD_ARTIFACT_DIR": str(Path(tmp) / "artifacts"),
            "JUMPBOARD_DATA_DIR": str(Path(tmp) / "data"),
            "JUMPBOARD_LOG_LEVEL": "WARNING",
        }
        app_port, bare_port = _free_port(), _free_port()
        uvicorn_args = ["-m", "uvicorn", "app.api.main:create_app", "--factory"]
        uvicorn_args += ["--host", "127.0.0.1", "--port", str(app_port), "--log-level", "warning"]
        uvicorn_args += ["--timeout-keep-alive", "300"]
        servers = [
            _start_server(uvicorn_args, env, app_port),
            _start_server([__file__, "--serve-bare", str(bare_port)], env, bare_port),
        ]
        try:
            results = asyncio.run(
                _run(
                    f"http://127.0.0.1:{app_port}",
                    f"http://127.0.0.1:{bare_port}",
                    token,
                    args.requests,
                    args.concurrency,
                    args.rounds,
                )
            )
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=30)
    backend = url.split(":", 1)[0].split("+")[0]
    print(f"machine: {_machine()}")
    print(
        f"database: {backend}; {args.requests} requests per row, "
        f"{args.concurrency} concurrent clients, "
        f"{args.rounds} interleaved rounds (req/s: median of rounds)"
    )
    print(f"{'scenario':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for m in results:
        print(
            f"{m.name:<24}{m.throughput:>9.0f}{m.quantile(0.5):>9.1f}{m.quantile(0.99):>9.1f}{m.errors:>8}"
        )
    by_name = {m.name: m for m in results}
    for ours, base in (
        ("POST /api/v1/jobs", "bare POST /bare"),
        ("GET /api/v1/jobs/{id}", "bare GET /bare"),
    ):
        a, b = by_name[ours], by_name[base]
        print(
            f"{ours} vs {base}: throughput x{a.throughput / b.throughput:.2f}, "
            f"p50 x{a.quantile(0.5) / b.quantile(0.5):.2f}, "
            f"p99 x{a.quantile(0.99) / b.quantile(0.99):.2f}"
        )
    return 1 if any(m.errors for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
