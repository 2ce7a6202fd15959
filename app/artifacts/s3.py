"""The object-store artifact store: files of an attempt go to an S3-compatible bucket under
`<prefix>/<job_id>/attempt-<n>/<name>` (through boto3, the `s3` extra), so workers on several
hosts need no shared file system.

Keys are per attempt, not per job: a worker that lost its lease but still uploads can never
overwrite the files of the attempt that ended the job (the row names the attempt's key). The
job writes into a scratch folder that is removed after the upload.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.artifacts.store import (
    CHUNK_BYTES,
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    StoredArtifact,
    existing_files,
    file_digest,
    verified_chunks,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

SINGLE_PUT_BYTES = 64 << 20
"""Files up to this size are uploaded in one request; larger ones in parts (boto3's transfer)."""
PRESIGNED_SECONDS = 300
"""Lifetime of a presigned download URL."""


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes) of `s3://bucket/prefix`."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def attempt_key_path(job_id: int, attempt: int, name: str) -> str:
    """The artifact's path below the store's prefix (what its row keeps)."""
    return f"{job_id}/attempt-{attempt}/{name}"


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects of one bucket below one prefix."""

    def __init__(self, url: str, *, endpoint: str | None, scratch_root: Path | None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # the optional extra is missing
            raise ArtifactStoreError(
                "JUMPBOARD_ARTIFACT_URL is an s3:// URL but boto3 is not installed "
                "(install jumpboard with the `s3` extra)"
            ) from exc
        self.url = url
        self.bucket, self.prefix = split_s3_url(url)
        self.scratch_root = scratch_root
        config = Config(
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            # Path-style addressing works with every S3-compatible server behind one host name.
            s3={"addressing_style": "path"} if endpoint else {},
        )
        self.client: S3Client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, config=config
        )

    @property
    def location(self) -> str:
        """The `s3://bucket/prefix` URL."""
        return self.url

    def _key(self, stored_path: str) -> str:
        return f"{self.prefix}/{stored_path}" if self.prefix else stored_path

    def _failed(self, action: str, exc: Exception) -> ArtifactStoreError:
        return ArtifactStoreError(f"object store {self.url}: {action} failed: {exc}")

    def check(self) -> None:
        """The bucket answers (and these credentials may use it)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # botocore's errors share no useful base besides Exception
            raise self._failed("reaching the bucket", exc) from exc

    def scratch_dir(self, job_id: int, attempt: int) -> Path:
        """A fresh temporary folder for this attempt (unique per worker)."""
        root = self.scratch_root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"jumpboard-job-{job_id}-{attempt}-", dir=root))

    def publish(
        self, job_id: int, attempt: int, folder: Path, names: Iterable[str]
    ) -> list[StoredArtifact]:
        """Upload each file under the attempt's keys, its sha256 in the object's metadata."""
        records = []
        for name, path in existing_files(folder, names):
            size, sha256 = file_digest(path)
            stored_path = attempt_key_path(job_id, attempt, name)
            extra: dict[str, Any] = {
                "Metadata": {"sha256": sha256},
                "ContentType": "application/octet-stream",
            }
            try:
                self._upload(path, size, self._key(stored_path), extra)
            except Exception as exc:  # boto3 and s3transfer raise several unrelated types
                raise self._failed(f"uploading {stored_path}", exc) from exc
            records.append(StoredArtifact(name, stored_path, size, sha256))
        log.info("job %s attempt %s: %d file(s) in %s", job_id, attempt, len(records), self.url)
        return records

    def _upload(self, path: Path, size: int, key: str, extra: dict[str, Any]) -> None:
        if size > SINGLE_PUT_BYTES:  # multipart, in parallel parts
            self.client.upload_file(str(path), self.bucket, key, extra)
            return
        with path.open("rb") as body:  # one request: most result files and small checkpoints
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)

    def release_scratch(self, folder: Path) -> None:
        """Remove the attempt's scratch folder."""
        shutil.rmtree(folder, ignore_errors=True)

    def read(self, job_id: int, stored_path: str, sha256: str) -> Iterator[bytes]:
        """Stream the object, checked against `sha256`."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(stored_path))
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                raise ArtifactMissing(f"{self.url}: no object {stored_path}") from exc
            raise self._failed(f"reading {stored_path}", exc) from exc
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()

        return verified_chunks(chunks(), sha256, stored_path)

    def presigned_url(self, stored_path: str, filename: str) -> str | None:
        """A GET URL valid for `PRESIGNED_SECONDS`, saving as `filename`."""
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(stored_path),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=PRESIGNED_SECONDS,
            )
        except Exception as exc:
            raise self._failed(f"signing {stored_path}", exc) from exc
