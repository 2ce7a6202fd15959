"""The answer to an artifact download, whichever store keeps the file: the file itself (local
folder), the object streamed with its sha256 checked, or a redirect to a presigned URL."""

from __future__ import annotations

import logging

from fastapi import HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from app.artifacts import ArtifactMissing, ArtifactStoreError, artifact_store
from app.db.models import Artifact
from app.settings import ArtifactServing, Settings

log = logging.getLogger(__name__)


def _unavailable(row: Artifact, exc: ArtifactStoreError) -> HTTPException:
    if isinstance(exc, ArtifactMissing):
        return HTTPException(status_code=404, detail=f"artifact {row.name!r} is not available")
    log.error("artifact %r of job %s: %s", row.name, row.job_id, exc)
    return HTTPException(
        status_code=503, detail=f"artifact {row.name!r}: the artifact store is unavailable"
    )


def artifact_response(settings: Settings, row: Artifact) -> Response:
    """Serve the artifact `row` records; 404 when its file is gone, 503 when the store fails."""
    try:
        store = artifact_store(settings)
        path = store.local_file(row.job_id, row.path)
        if path is not None:
            return FileResponse(
                path, media_type="application/octet-stream", filename=row.name, stat_result=None
            )
        if settings.artifact_url is None:  # the local store found no file
            raise ArtifactMissing(row.path)
        if settings.artifact_serve is ArtifactServing.REDIRECT:
            url = store.presigned_url(row.path, row.name)
            if url is not None:
                return RedirectResponse(url, status_code=307)
        chunks = store.read(row.job_id, row.path, row.sha256)
    except ArtifactStoreError as exc:
        raise _unavailable(row, exc) from exc
    headers = {
        "Content-Length": str(row.size),
        "Content-Disposition": f'attachment; filename="{row.name}"',
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
