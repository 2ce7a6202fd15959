"""The S3 artifact store against a real S3-compatible server (moto's standalone server): files
published under per-attempt keys, read back with their sha256 checked, a tampered object cut
short, a missing one and an unreachable store reported as such."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_server import free_port
from object_store import CREDENTIALS, ObjectStore

from app.artifacts import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStoreError,
    LocalArtifactStore,
    artifact_store,
)
from app.artifacts.s3 import S3ArtifactStore
from app.settings import Settings, SettingsError, load_settings


def _settings(tmp_path: Path, store: ObjectStore) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        artifact_dir=tmp_path / "artifacts",
        artifact_url=store.url,
        artifact_endpoint=store.endpoint,
        scratch_dir=tmp_path / "scratch",
    )


def _write_job_files(folder: Path) -> dict[str, bytes]:
    files = {"base.ckpt": b"weights" * 1000, "result.json": b'{"kind": "train"}'}
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return files


def test_publish_and_read_back_under_attempt_keys(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    store = artifact_store(_settings(tmp_path, object_store))
    assert isinstance(store, S3ArtifactStore)
    store.check()
    folder = store.scratch_dir(7, 2)
    assert folder.is_relative_to(tmp_path / "scratch")
    files = _write_job_files(folder)

    records = store.publish(7, 2, folder, ["base.ckpt", "result.json", "absent.bin"])

    assert {r.name for r in records} == set(files)  # a listed file that is not there is skipped
    for record in records:
        assert record.path == f"7/attempt-2/{record.name}"
        assert record.sha256 == hashlib.sha256(files[record.name]).hexdigest()
        assert record.size == len(files[record.name])
        assert b"".join(store.read(7, record.path, record.sha256)) == files[record.name]
    assert sorted(object_store.keys()) == [
        "runs/7/attempt-2/base.ckpt",
        "runs/7/attempt-2/result.json",
    ]
    store.release_scratch(folder)
    assert not folder.exists()
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def test_a_tampered_object_ends_short_and_a_missing_one_is_missing(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    store = artifact_store(_settings(tmp_path, object_store))
    folder = store.scratch_dir(8, 1)
    _write_job_files(folder)
    (record,) = store.publish(8, 1, folder, ["base.ckpt"])
    client = object_store.client()
    client.put_object(
        Bucket=object_store.bucket, Key=f"runs/{record.path}", Body=b"not the weights" * 100_000
    )
    received: list[bytes] = []
    with pytest.raises(ArtifactCorrupt):
        received.extend(store.read(8, record.path, record.sha256))
    assert sum(map(len, received)) < 15 * 100_000  # the last chunk was held back
    with pytest.raises(ArtifactMissing):
        list(store.read(8, "8/attempt-1/gone.bin", record.sha256))


def test_an_unreachable_store_is_an_error_not_a_success(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    settings = _settings(tmp_path, object_store)
    settings.artifact_url = "s3://no-such-bucket-here/x"
    with pytest.raises(ArtifactStoreError, match="no-such-bucket-here"):
        artifact_store(settings).check()
    settings.artifact_url = object_store.url
    settings.artifact_endpoint = f"http://127.0.0.1:{free_port()}"  # nobody listens
    store = artifact_store(settings)
    folder = store.scratch_dir(9, 1)
    _write_job_files(folder)
    with pytest.raises(ArtifactStoreError, match="uploading"):
        store.publish(9, 1, folder, ["base.ckpt"])


def test_the_local_store_keeps_files_in_the_job_folder(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    folder = store.scratch_dir(3, 1)
    files = _write_job_files(folder)
    records = store.publish(3, 1, folder, list(files))
    assert {r.path for r in records} == set(files)
    for record in records:
        assert store.local_file(3, record.path) == (folder / record.name).resolve()
        assert b"".join(store.read(3, record.path, record.sha256)) == files[record.name]
    assert store.local_file(3, "../4/base.ckpt") is None
    (folder / "base.ckpt").write_bytes(b"changed")
    base = next(r for r in records if r.name == "base.ckpt")
    with pytest.raises(ArtifactCorrupt):
        list(store.read(3, base.path, base.sha256))


def test_settings_name_the_bad_artifact_url() -> None:
    with pytest.raises(SettingsError, match="JUMPBOARD_ARTIFACT_URL: must be an s3://"):
        load_settings(artifact_url="gs://bucket/x")
    with pytest.raises(SettingsError, match="must name a bucket"):
        load_settings(artifact_url="s3:///x")


def test_a_worker_that_cannot_reach_its_store_says_so_and_exits(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPBOARD_")}
    env.update(
        CREDENTIALS,
        JUMPBOARD_DATABASE_URL=sqlite_url,
        JUMPBOARD_ARTIFACT_DIR=str(tmp_path / "artifacts"),
        JUMPBOARD_DATA_DIR=str(tmp_path / "data"),
        JUMPBOARD_DEVICE_LOCK_DIR=str(tmp_path / "locks"),
        JUMPBOARD_ARTIFACT_URL="s3://jumpboard/runs",
        JUMPBOARD_ARTIFACT_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nobody listens
    )
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr  # a configuration error (README's exit codes)
    assert "JUMPBOARD_ARTIFACT_URL: object store s3://jumpboard/runs" in done.stderr
    assert "Traceback" not in done.stderr
