"""Data sets as a resource: upload (npz, image archives), list, show, delete, and every hostile
upload refused with a 4xx naming the problem, leaving nothing on disk or in the database.

Real app, real SQLite and PostgreSQL databases, real files; nothing replaced.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_client import Api, make_api
from sqlalchemy import func, select
from user_data_files import (
    image_members,
    write_npz,
    write_tar,
    write_tar_with_link,
    write_zip,
)

from app.db.models import Dataset


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite database, with small upload and archive limits."""
    yield from make_api(
        sqlite_url,
        tmp_path,
        max_upload_bytes=200_000,
        max_unpacked_bytes=1_000_000,
        max_archive_members=500,
    )


@pytest.fixture
def db_api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite and a fresh PostgreSQL database."""
    yield from make_api(db_url, tmp_path)


def upload(api: Api, path: Path, name: str | None = None) -> Any:
    """POST the file at `path` as field `file`."""
    with path.open("rb") as handle:
        return api.client.post(
            "/api/v1/datasets", files={"file": (name or path.name, handle)}, headers=api.auth
        )


def stored_files(api: Api) -> list[Path]:
    """Every file under the data set folder (temporary uploads included)."""
    root = api.settings.dataset_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def dataset_rows(api: Api) -> int:
    """Rows in the datasets table."""
    with api.client.app.state.session_factory() as session:  # type: ignore[attr-defined]  # the app's state
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


def test_npz_upload_list_show_delete(db_api: Api, tmp_path: Path) -> None:
    response = upload(db_api, write_npz(tmp_path / "mine.npz"))
    assert response.status_code == 201, response.text
    ds = response.json()
    assert response.headers["location"] == f"/api/v1/datasets/{ds['id']}"
    assert (ds["format"], ds["input_shape"], ds["num_classes"]) == ("npz", [12], 3)
    assert (ds["train_size"], ds["val_size"], ds["test_size"], ds["model_kind"]) == (
        96,
        0,
        32,
        "mlp",
    )
    assert ds["spec_data"] == {"name": "uploaded", "id": str(ds["id"])}
    assert [p.name for p in stored_files(db_api)] == [f"{ds['sha256']}.npz"]
    again = upload(db_api, tmp_path / "mine.npz", "same-content.npz")
    assert again.status_code == 200 and again.json()["id"] == ds["id"]
    assert db_api.client.get(f"/api/v1/datasets/{ds['sha256']}").json() == ds
    assert [d["id"] for d in db_api.client.get("/api/v1/datasets").json()["items"]] == [ds["id"]]
    gone = db_api.client.delete(f"/api/v1/datasets/{ds['id']}", headers=db_api.auth)
    assert gone.status_code == 200, gone.text
    assert stored_files(db_api) == [] and dataset_rows(db_api) == 0
    assert db_api.client.get(f"/api/v1/datasets/{ds['id']}").status_code == 404


@pytest.mark.parametrize("writer", [write_tar, write_zip], ids=["tar.gz", "zip"])
def test_image_archive_upload(
    api: Api, tmp_path: Path, writer: Callable[[Path, dict[str, bytes]], Path]
) -> None:
    name = "shapes.tar.gz" if writer is write_tar else "shapes.zip"
    response = upload(api, writer(tmp_path / name, image_members()))
    assert response.status_code == 201, response.text
    ds = response.json()
    assert (ds["format"], ds["input_shape"], ds["num_classes"], ds["model_kind"]) == (
        "image_archive",
        [3, 8, 8],
        3,
        "conv2d",
    )
    assert (ds["train_size"], ds["test_size"]) == (36, 12)


def test_uploads_need_a_token_and_multipart(api: Api, tmp_path: Path) -> None:
    path = write_npz(tmp_path / "a.npz")
    with path.open("rb") as handle:
        anonymous = api.client.post("/api/v1/datasets", files={"file": ("a.npz", handle)})
    assert anonymous.status_code == 401
    as_json = api.client.post("/api/v1/datasets", json={"file": "x"}, headers=api.auth)
    assert as_json.status_code == 415
    no_file = api.client.post(
        "/api/v1/datasets", files={"other": ("a.npz", b"x")}, headers=api.auth
    )
    assert no_file.status_code == 422
    assert dataset_rows(api) == 0


def _zip_bomb(path: Path) -> Path:
    members = image_members(2, 1)
    members["shapes/train/red/bomb.png"] = b"\0" * 5_000_000  # 5 MB of zeros, ~5 kB packed
    return write_zip(path, members)


def _escape_tar(path: Path) -> Path:
    return write_tar(path, {**image_members(2, 1), "shapes/../../evil.png": b"x"})


def _absolute_zip(path: Path) -> Path:
    members = image_members(2, 1)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo("/tmp/evil.png")
        archive.writestr(info, b"x")
    return path


def _zip_with_link(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in image_members(2, 1).items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo("shapes/train/red/link.png")
        info.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(info, "/etc/passwd")
    return path


def _many_members(path: Path) -> Path:
    return write_tar(path, image_members(200, 1))


def _missing_arrays(path: Path) -> Path:
    np.savez(path, x=np.zeros(3))
    return path


def _undecodable(path: Path) -> Path:
    return write_tar(path, {**image_members(4, 1), "shapes/train/red/broken.png": b"not a png"})


def _mixed_sizes(path: Path) -> Path:
    from user_data_files import png_bytes

    return write_tar(
        path, {**image_members(4, 1), "shapes/train/red/big.png": png_bytes((1, 2, 3), 9)}
    )


def _npz(**override: Any) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        return write_npz(path, **override)

    return write


def _oversize(path: Path) -> Path:
    return write_npz(path, n_train=5000)


NAN_X = np.full((96, 12), np.nan, dtype=np.float32)

HOSTILE: list[tuple[str, str, Callable[[Path], Path], int, str]] = [
    ("oversize", "big.npz", _oversize, 413, "larger than the upload limit"),
    ("zip bomb", "bomb.zip", _zip_bomb, 422, "unpacks to"),
    ("too many members", "many.tar.gz", _many_members, 422, "over 500 members"),
    ("path escape", "escape.tar.gz", _escape_tar, 422, "escapes the archive's folder"),
    ("absolute path", "abs.zip", _absolute_zip, 422, "absolute path"),
    ("tar link", "link.tar", write_tar_with_link, 422, "link or special file"),
    ("zip link", "link.zip", _zip_with_link, 422, "link or special file"),
    ("pickle", "pickle.npz", _npz(x_test=np.array([{"a": 1}] * 32, dtype=object)), 422, "pickle"),
    ("nan", "nan.npz", _npz(x_train=NAN_X), 422, "NaN or infinite"),
    ("label out of range", "labels.npz", _npz(y_test=np.full(32, 7)), 422, "outside the 3 classes"),
    ("negative label", "neg.npz", _npz(y_train=np.full(96, -1)), 422, "negative labels"),
    ("float labels", "float.npz", _npz(y_train=np.zeros(96)), 422, "integer class labels"),
    ("mismatched lengths", "len.npz", _npz(y_train=np.zeros(95, dtype=int)), 422, "has 95 labels"),
    (
        "too few examples",
        "few.npz",
        _npz(x_train=np.zeros((4, 12)), y_train=np.arange(4) % 2),
        422,
        "at least 10",
    ),
    (
        "missing arrays",
        "missing.npz",
        _missing_arrays,
        422,
        "lacks x_train",
    ),
    ("undecodable image", "broken.tar.gz", _undecodable, 422, "does not decode"),
    ("mixed image sizes", "sizes.tar.gz", _mixed_sizes, 422, "same size"),
    ("not an archive", "junk.zip", lambda p: (p.write_bytes(b"junk" * 100), p)[1], 422, "not"),
    ("unknown ending", "data.csv", lambda p: (p.write_text("1,2"), p)[1], 422, ".npz"),
]


@pytest.mark.parametrize(
    ("filename", "writer", "status", "reason"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_upload_is_refused_and_leaves_nothing(
    api: Api,
    tmp_path: Path,
    filename: str,
    writer: Callable[[Path], Path],
    status: int,
    reason: str,
) -> None:
    path = writer(tmp_path / filename)
    response = upload(api, path)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"], response.text
    assert stored_files(api) == []
    assert dataset_rows(api) == 0


def test_declared_oversize_is_refused_before_reading(api: Api) -> None:
    body = io.BytesIO(b"x" * 10)
    response = api.client.post(
        "/api/v1/datasets",
        content=body.getvalue(),
        headers={
            **api.auth,
            "content-type": "multipart/form-data; boundary=b",
            "content-length": str(10**9),
        },
    )
    assert response.status_code == 413
    assert stored_files(api) == []


def test_tar_members_are_never_extracted(api: Api, tmp_path: Path) -> None:
    # The escaping member's target must not exist after the refusal.
    target = tmp_path / "escaped"
    with tarfile.open(tmp_path / "e.tar", "w") as archive:
        info = tarfile.TarInfo(f"../../../../../../..{target}")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    response = upload(api, tmp_path / "e.tar")
    assert response.status_code == 422
    assert not target.exists()


def test_an_upload_streamed_without_a_length_is_cut_off_at_the_limit(api: Api) -> None:
    # A real server (uvicorn in a thread): the test client would buffer the body first.
    import threading
    import time

    import httpx
    import uvicorn
    from local_server import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api.client.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n\r\n'
        for _ in range(200):  # 200 x 1 MiB: far past the 200 kB limit
            sent += 1
            yield b"\0" * (1 << 20)
        yield b"\r\n--b--\r\n"

    try:
        while not server.started:
            time.sleep(0.05)
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/datasets",
            content=body(),
            headers={**api.auth, "content-type": "multipart/form-data; boundary=b"},
            timeout=60,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    # The server's memory while it refuses is measured by benchmarks/upload_memory.py (the
    # client may go on sending after the answer: uvicorn drains the rest unread).
    assert response.status_code == 413, response.text
    assert "larger than the upload limit of 200000 bytes" in response.text
    assert sent >= 1
    assert stored_files(api) == [] and dataset_rows(api) == 0


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(api: Api, tmp_path: Path) -> None:
    from PIL import Image

    huge = io.BytesIO()
    Image.new("L", (5000, 5000)).save(huge, format="PNG")  # 25 Mpx, ~25 kB packed
    members = {**image_members(2, 1), "shapes/train/red/huge.png": huge.getvalue()}
    response = upload(api, write_tar(tmp_path / "huge.tar.gz", members))
    assert response.status_code == 422
    assert "over the limit of 16777216" in response.json()["detail"]
