"""Memory of the API process while data sets are uploaded: the upload streams, only the check
holds the data.

Starts `jumpboard serve --no-worker` on a fresh SQLite database in a subprocess and reads its
peak resident memory (VmHWM) from /proc after each case, as growth over the peak after a
warm-up upload:

    refused   a file several times the upload limit, streamed in chunks without a length:
              refused once the limit is passed (413); growth should be a small fraction of the
              file (the body is never held whole)
    accepted  a large uncompressed `.npz`: received in chunks to disk, then checked, which
              loads its arrays once (growth about the arrays' size, the data a job loads too)

    .venv/bin/python benchmarks/upload_memory.py [--refused-mb 300] [--accepted-mb 100]

The upload limit is set just above the accepted file, so the refused file is refused by it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

MB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def _multipart_stream(path: Path, boundary: str) -> Iterator[bytes]:
    """A multipart body with one file field, in 1 MiB chunks (no Content-Length)."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def _upload(url: str, token: str, path: Path) -> int:
    boundary = "jumpboard-benchmark-boundary"
    try:
        response = httpx.post(
            f"{url}/api/v1/datasets",
            content=_multipart_stream(path, boundary),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
            timeout=600,
        )
    except httpx.HTTPError:  # the server may close the connection on a refused stream
        return 413
    return response.status_code


def _write_npz(path: Path, megabytes: int) -> None:
    n = megabytes * MB // (4 * 256)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 256)).astype(np.float32)
    y = rng.integers(0, 10, n)
    np.savez(path, x_train=x, y_train=y, x_test=x[:100], y_test=y[:100])


def main() -> int:
    """Run the cases and print the peak memory growth of each against its file size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refused-mb", type=int, default=300)
    parser.add_argument("--accepted-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jumpboard-upload-bench-") as tmp:
        home = Path(tmp)
        port = _free_port()
        env = {
            **os.environ,
            "HOME": str(home),
            "JUMPBOARD_DATABASE_URL": f"sqlite:///{home / 'jumpboard.db'}",
            "JUMPBOARD_ARTIFACT_DIR": str(home / "artifacts"),
            "JUMPBOARD_MAX_UPLOAD_BYTES": str((args.accepted_mb + 2) * MB),
        }
        small, accepted, refused = home / "small.npz", home / "accepted.npz", home / "big.npz"
        _write_npz(small, 1)
        _write_npz(accepted, args.accepted_mb)
        refused.write_bytes(os.urandom(args.refused_mb * MB))
        log = (home / "serve.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            token = (home / "local-token").read_text().strip()
            assert _upload(url, token, small) == 201
            base = _peak_rss_mb(proc.pid)
            print(f"API process peak RSS after warm-up: {base:.0f} MiB")
            big = refused.stat().st_size / MB
            status = _upload(url, token, refused)
            after_refused = _peak_rss_mb(proc.pid)
            print(
                f"refused  {big:7.0f} MiB file: HTTP {status}, peak RSS +"
                f"{after_refused - base:.0f} MiB ({(after_refused - base) / big:.2f}x the file)"
            )
            size = accepted.stat().st_size / MB
            status = _upload(url, token, accepted)
            after_accepted = _peak_rss_mb(proc.pid)
            print(
                f"accepted {size:7.0f} MiB npz: HTTP {status}, peak RSS +"
                f"{after_accepted - after_refused:.0f} MiB "
                f"({(after_accepted - after_refused) / size:.2f}x the file)"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
