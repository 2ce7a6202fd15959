"""Job artifacts behind one interface: the local folder (default) or an S3-compatible object
store (`JUMPBOARD_ARTIFACT_URL=s3://bucket/prefix`). Workers publish through it, the API reads
through it; `artifact_store(settings)` gives the process's store."""

from __future__ import annotations

import threading

from app.artifacts.local import LocalArtifactStore
from app.artifacts.store import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    StoredArtifact,
    file_digest,
    verified_chunks,
)
from app.settings import Settings

__all__ = [
    "ArtifactCorrupt",
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactStoreError",
    "LocalArtifactStore",
    "StoredArtifact",
    "artifact_store",
    "file_digest",
    "verified_chunks",
]

_stores: dict[tuple[str, str | None, str | None, str | None], ArtifactStore] = {}
_lock = threading.Lock()


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store `settings` name, built once per configuration (an object-store client is
    reused: it is thread-safe and slow to create). Raises ArtifactStoreError when the `s3`
    extra is missing."""
    scratch = str(settings.scratch_dir) if settings.scratch_dir else None
    key = (str(settings.artifact_dir), settings.artifact_url, settings.artifact_endpoint, scratch)
    with _lock:
        store = _stores.get(key)
        if store is None:
            if settings.artifact_url is None:
                store = LocalArtifactStore(settings.artifact_dir)
            else:
                from app.artifacts.s3 import S3ArtifactStore

                store = S3ArtifactStore(
                    settings.artifact_url,
                    endpoint=settings.artifact_endpoint,
                    scratch_root=settings.scratch_dir,
                )
            _stores[key] = store
        return store
