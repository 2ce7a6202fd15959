"""The artifact store's interface: where a job's files go after it ran and where the API reads
them from, with the records the `artifacts` table keeps and the sha256 checked on every read.

Two back ends implement it: `app.artifacts.local` (files stay in the job's folder under
`artifact_dir`, the embedded default) and `app.artifacts.s3` (an S3-compatible object store,
for workers on several hosts). `app.artifacts.artifact_store(settings)` picks one.
"""

from __future__ import annotations

import abc
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Read and stream artifacts in pieces of this size."""


class ArtifactStoreError(RuntimeError):
    """The store could not be reached or refused a request (the message says which)."""


class ArtifactMissing(ArtifactStoreError):
    """The store has no file for a recorded artifact."""


class ArtifactCorrupt(ArtifactStoreError):
    """A stored file's bytes no longer match the sha256 recorded when the job ended."""


@dataclass(frozen=True)
class StoredArtifact:
    """One stored file of a job attempt: the `artifacts` row the queue writes."""

    name: str
    """Plain file name, unique per job."""
    path: str
    """Where the store finds it: relative to the job folder (local) or to the store's prefix."""
    size: int
    sha256: str

    def as_row(self) -> dict[str, Any]:
        """The `artifacts` row's columns (without `job_id`)."""
        return {"name": self.name, "path": self.path, "size": self.size, "sha256": self.sha256}


def file_digest(path: Path) -> tuple[int, str]:
    """Size in bytes and sha256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def existing_files(folder: Path, names: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """(plain name, path) of each named file present in `folder`, once each; a listed name with
    no file is logged and skipped (as the queue always did)."""
    for name in dict.fromkeys(names):
        path = folder / name
        if not path.is_file():
            log.warning("artifact %s listed but not found under %s", name, folder)
            continue
        yield Path(name).name, path


def verified_chunks(chunks: Iterable[bytes], sha256: str, what: str) -> Iterator[bytes]:
    """Pass `chunks` on while hashing them, holding the last one back until the digest matched
    `sha256`: a corrupt file ends short (the reader sees a truncated body), never complete."""
    digest = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        digest.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if digest.hexdigest() != sha256:
        log.error("artifact %s: sha256 %s, expected %s", what, digest.hexdigest(), sha256)
        raise ArtifactCorrupt(f"artifact {what} does not match its recorded sha256")
    if held is not None:
        yield held


class ArtifactStore(abc.ABC):
    """Where a job's files are kept; one instance serves a process (thread-safe)."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """The store in words for logs and errors (a folder or an `s3://` URL)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ArtifactStoreError unless the store can be used now (a worker checks at start,
        so a misconfigured store stops it instead of failing jobs)."""

    @abc.abstractmethod
    def scratch_dir(self, job_id: int, attempt: int) -> Path:
        """The folder one attempt of a job writes its files into (not yet created)."""

    @abc.abstractmethod
    def publish(
        self, job_id: int, attempt: int, folder: Path, names: Iterable[str]
    ) -> list[StoredArtifact]:
        """Keep the named files of `folder` as the attempt's artifacts; raise
        ArtifactStoreError when the store refuses them (nothing is recorded then)."""

    @abc.abstractmethod
    def release_scratch(self, folder: Path) -> None:
        """The attempt has ended: drop its scratch folder if the store does not keep files
        there."""

    @abc.abstractmethod
    def read(self, job_id: int, stored_path: str, sha256: str) -> Iterator[bytes]:
        """The artifact's bytes, checked against `sha256` as they are read (ArtifactCorrupt
        before the last chunk when they differ); ArtifactStoreError when it is unavailable."""

    def local_file(self, job_id: int, stored_path: str) -> Path | None:
        """The artifact as a file on this host (served directly), or None when it is not one."""
        return None

    def presigned_url(self, stored_path: str, filename: str) -> str | None:
        """A short-lived URL the client can download the artifact from, or None."""
        return None
