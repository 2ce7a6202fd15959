"""The local artifact store: a job's files stay in its folder `artifact_dir/<job_id>/` (the
embedded default; several hosts need a shared file system for it)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.artifacts.store import (
    CHUNK_BYTES,
    ArtifactMissing,
    ArtifactStore,
    StoredArtifact,
    existing_files,
    file_digest,
    verified_chunks,
)

log = logging.getLogger(__name__)


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files in the job's folder; rows keep paths relative to that folder."""

    def __init__(self, artifact_dir: Path) -> None:
        self.artifact_dir = artifact_dir

    @property
    def location(self) -> str:
        """The artifact folder."""
        return str(self.artifact_dir)

    def check(self) -> None:
        """Nothing to check up front: a folder that cannot be written fails the job that
        tries (its worker goes on), as it always did."""

    def scratch_dir(self, job_id: int, attempt: int) -> Path:
        """The job's own folder: its files are kept where they were written."""
        return self.artifact_dir / str(job_id)

    def publish(
        self, job_id: int, attempt: int, folder: Path, names: Iterable[str]
    ) -> list[StoredArtifact]:
        """Describe the files in place (size, sha256); nothing moves."""
        records = []
        for name, path in existing_files(folder, names):
            size, sha256 = file_digest(path)
            records.append(StoredArtifact(name, str(path.relative_to(folder)), size, sha256))
        return records

    def release_scratch(self, folder: Path) -> None:
        """Nothing to do: the scratch folder is the artifact folder."""

    def local_file(self, job_id: int, stored_path: str) -> Path | None:
        """The stored file, confined to the job's folder; None when missing or outside it."""
        job_dir = (self.artifact_dir / str(job_id)).resolve()
        # The stored path (never a request's) decides the file; it must stay inside job_dir.
        stored = Path(stored_path)
        candidate = (stored if stored.is_absolute() else job_dir / stored).resolve()
        if not candidate.is_relative_to(job_dir) or not candidate.is_file():
            log.warning("artifact %r of job %s is missing or outside its folder", stored, job_id)
            return None
        return candidate

    def read(self, job_id: int, stored_path: str, sha256: str) -> Iterator[bytes]:
        """The file's bytes, checked against `sha256`."""
        path = self.local_file(job_id, stored_path)
        if path is None:
            raise ArtifactMissing(f"artifact {stored_path!r} of job {job_id} is not available")

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                yield from iter(lambda: handle.read(CHUNK_BYTES), b"")

        return verified_chunks(chunks(), sha256, f"{job_id}/{stored_path}")
