"""A real S3-compatible server for the tests: moto's standalone server (`moto[server]`, an HTTP
server in its own process, not a mocked client), one bucket per test, and the settings and
environment that point Jumpboard at it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
from local_server import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "jumpboard-test",
    "AWS_SECRET_ACCESS_KEY": "jumpboard-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; boto3 needs some."""


@dataclass
class ObjectStore:
    """A running S3-compatible server and one empty bucket on it."""

    endpoint: str
    bucket: str
    prefix: str = "runs"

    @property
    def url(self) -> str:
        """The `JUMPBOARD_ARTIFACT_URL` of the bucket's prefix."""
        return f"s3://{self.bucket}/{self.prefix}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing a Jumpboard process at this store."""
        return {
            **CREDENTIALS,
            "JUMPBOARD_ARTIFACT_URL": self.url,
            "JUMPBOARD_ARTIFACT_ENDPOINT": self.endpoint,
        }

    def client(self) -> S3Client:
        """A plain boto3 client of the server (to look at or tamper with objects)."""
        client: S3Client = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)
        return client

    def keys(self) -> list[str]:
        """Every object key in the bucket."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port until the block ends; yields its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    raise RuntimeError(f"moto server exited: {log_path.read_text()[-2000:]}")
                try:
                    httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("moto server did not answer")
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def new_bucket(endpoint: str) -> ObjectStore:
    """A fresh bucket on the server at `endpoint`."""
    store = ObjectStore(endpoint=endpoint, bucket=f"jb-{uuid.uuid4().hex[:12]}")
    store.client().create_bucket(Bucket=store.bucket)
    return store
