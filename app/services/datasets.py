"""Uploaded data sets: receive a file in chunks, check it, store it content-addressed; find,
list and delete them; resolve a spec's `data: {name: uploaded, id: ...}` into the stored file.

Torch-free: the checks are `expansion.userdata`'s (numpy, zipfile/tarfile, Pillow). An upload is
written to a temporary file under `dataset_dir/.incoming/` while its sha256 and size are
counted, and moved to `dataset_dir/<sha256>.<ext>` only after every check passed, so a refused
upload leaves nothing on disk or in the database.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.enums import JobStatus
from app.db.models import Dataset, Job, utcnow
from app.db.session import begin_write
from app.settings import Settings
from expansion.userdata.arrays import ArchiveLimits, DataFormat, DataProblem, summarize
from expansion.userdata.reading import read_user_data

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Bytes copied at a time: an upload never sits in memory whole."""

SUFFIXES: dict[str, tuple[DataFormat, str]] = {
    ".npz": (DataFormat.NPZ, ".npz"),
    ".zip": (DataFormat.IMAGE_ARCHIVE, ".zip"),
    ".tar": (DataFormat.IMAGE_ARCHIVE, ".tar"),
    ".tar.gz": (DataFormat.IMAGE_ARCHIVE, ".tar.gz"),
    ".tgz": (DataFormat.IMAGE_ARCHIVE, ".tar.gz"),
}
"""Accepted file name endings: the format and the stored file's ending."""


class Refusal(enum.IntEnum):
    """HTTP status of a refused upload or deletion."""

    TOO_LARGE = 413
    INVALID = 422
    IN_USE = 409
    NOT_FOUND = 404


class DatasetRefused(Exception):
    """An upload or deletion that was refused; `status` and `reason` become the HTTP answer."""

    def __init__(self, status: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UploadTooLarge(Exception):
    """Raised while an upload's request body streams in, once it passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"file: larger than the upload limit of {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredUpload:
    """The data set an upload named, and whether this upload created it."""

    dataset: Dataset
    created: bool


def archive_limits(settings: Settings) -> ArchiveLimits:
    """The zip-bomb limits of uploads."""
    return ArchiveLimits(
        max_members=settings.max_archive_members, max_unpacked_bytes=settings.max_unpacked_bytes
    )


def upload_format(filename: str) -> tuple[DataFormat, str]:
    """(format, stored ending) from the uploaded file's name; refuses other endings."""
    lower = filename.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return SUFFIXES[suffix]
    raise DatasetRefused(
        Refusal.INVALID,
        f"file {filename!r}: a data set is a .npz, or an image folder as .tar, .tar.gz or .zip",
    )


def _receive(source: BinaryIO, target: Path, limit: int) -> tuple[str, int]:
    """Copy `source` into `target` in chunks; (sha256, size). Refuses more than `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise DatasetRefused(
                    Refusal.TOO_LARGE, f"file: larger than the upload limit of {limit} bytes"
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def store_upload(
    session: Session, settings: Settings, source: BinaryIO, filename: str
) -> StoredUpload:
    """Check the uploaded file and store it (or find the same content stored already)."""
    fmt, ending = upload_format(filename)
    incoming = settings.dataset_dir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    temp = incoming / f"{uuid.uuid4().hex}{ending}"
    try:
        sha, size = _receive(source, temp, settings.max_upload_bytes)
        existing = session.scalar(select(Dataset).where(Dataset.sha256 == sha))
        if existing is not None:
            return StoredUpload(existing, created=False)
        try:
            arrays, fmt = read_user_data(temp, archive_limits(settings), fmt)
        except DataProblem as exc:
            raise DatasetRefused(Refusal.INVALID, f"file: {exc.reason}") from None
        summary = summarize(arrays, fmt)
        del arrays
        file_name = f"{sha}{ending}"
        os.replace(temp, settings.dataset_dir / file_name)
        row = Dataset(
            name=Path(filename).name[:255],
            sha256=sha,
            format=str(fmt),
            file_name=file_name,
            size_bytes=size,
            input_shape=list(summary.input_shape),
            num_classes=summary.num_classes,
            train_size=summary.train_size,
            val_size=summary.val_size,
            test_size=summary.test_size,
            created_at=utcnow(),
        )
        begin_write(session)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # the same content uploaded concurrently: one row, one file
            session.rollback()
            same = session.scalar(select(Dataset).where(Dataset.sha256 == sha))
            if same is None:
                raise
            return StoredUpload(same, created=False)
        log.info("data set %s stored (%s, %d bytes)", row.id, sha[:12], size)
        return StoredUpload(row, created=True)
    finally:
        temp.unlink(missing_ok=True)


def find_dataset(session: Session, ref: str | int, *, lock: bool = False) -> Dataset | None:
    """The data set with id or sha256 `ref`; `lock` holds a share lock (PostgreSQL) until the
    transaction ends, so that it cannot be deleted under a job being queued."""
    ref = str(ref).strip().lower()
    if ref.isdigit():
        query = select(Dataset).where(Dataset.id == int(ref))
    else:
        query = select(Dataset).where(Dataset.sha256 == ref)
    if lock:
        query = query.with_for_update(read=True)
    return session.scalar(query)


def list_datasets(session: Session, limit: int, before_id: int | None) -> list[Dataset]:
    """Data sets, newest first, at most `limit`, with ids below `before_id`."""
    query = select(Dataset).order_by(Dataset.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Dataset.id < before_id)
    return list(session.scalars(query))


def jobs_using(session: Session, sha256: str) -> list[int]:
    """Ids of queued or running jobs whose spec reads the data set `sha256`."""
    active = select(Job).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    return [
        job.id
        for job in session.scalars(active)
        if isinstance(job.spec.get("data"), dict) and job.spec["data"].get("sha256") == sha256
    ]


def delete_dataset(session: Session, settings: Settings, ref: str | int) -> Dataset:
    """Delete a data set and its file; refused (409) while a queued or running job uses it.

    The row is locked (PostgreSQL: FOR UPDATE; SQLite: the write transaction) before the jobs
    are looked at, and intake holds a share lock on it until the job row is committed: a job
    cannot be queued on a data set between this check and the deletion."""
    if session.in_transaction():
        session.commit()
    begin_write(session)
    row = find_dataset(session, ref)
    if row is not None:
        row = session.scalar(select(Dataset).where(Dataset.id == row.id).with_for_update())
    if row is None:
        session.rollback()
        raise DatasetRefused(Refusal.NOT_FOUND, f"data set {ref} not found")
    users = jobs_using(session, row.sha256)
    if users:
        session.rollback()
        raise DatasetRefused(
            Refusal.IN_USE,
            f"data set {row.id} is used by queued or running jobs {users}: cancel them or "
            "wait for them to finish",
        )
    session.delete(row)
    session.commit()
    (settings.dataset_dir / row.file_name).unlink(missing_ok=True)
    log.info("data set %s deleted", row.id)
    return row


def resolve_uploaded(raw: Any, session: Session | None, settings: Settings) -> Any:
    """`raw` with `data: {name: uploaded, id}` filled from the stored data set (path, sha256,
    shape, classes, sizes); anything else unchanged. Problems come back as `(field, reason)`
    through `UploadedDataProblem`."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        return raw
    data = raw["data"]
    if data.get("name") != "uploaded":
        return raw
    ref = data.get("id", data.get("sha256"))
    if not isinstance(ref, str | int) or isinstance(ref, bool):
        return raw  # the spec's own checks name the missing id
    if session is None:
        raise UploadedDataProblem("data.id", "uploaded data sets are read by the service only")
    row = find_dataset(session, ref, lock=True)
    if row is None:
        raise UploadedDataProblem(
            "data.id", f"no uploaded data set {ref} (see GET /api/v1/datasets)"
        )
    filled = {
        "id": str(row.id),
        "sha256": row.sha256,
        "path": str((settings.dataset_dir / row.file_name).resolve()),
        "input_shape": list(row.input_shape),
        "classes": row.num_classes,
        "train_size": row.train_size,
        "val_size": row.val_size,
        "test_size": row.test_size,
    }
    return {**raw, "data": {**data, **filled}}


class UploadedDataProblem(ValueError):
    """A spec names an uploaded data set that cannot be used."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
