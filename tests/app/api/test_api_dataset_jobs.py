"""Jobs on uploaded data over the API: a generated `.npz` and a generated image-folder archive
are uploaded, a train job and an expand job run on each (shrunk) in a real worker, and the
results come back; specs naming data that cannot be used are refused at submission, and a data
set is not deleted while a job uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_client import Api, make_api
from user_data_files import image_members, write_npz, write_tar

from app.worker.loop import Worker as JobWorker

TRAIN: dict[str, Any] = {"epochs": 2, "batch_size": 16, "accelerator": "cpu"}
EXPAND: dict[str, Any] = {
    "select": "all",
    "seeds": [0],
    "continue_steps": 3,
    "grad_batch_size": 4,
    "line_search_points": 2,
}


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite database."""
    yield from make_api(
        sqlite_url,
        tmp_path,
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "locks",
        lease_seconds=30.0,
        heartbeat_seconds=0.5,
        metrics_flush_seconds=0.5,
    )


def _upload(api: Api, path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        response = api.client.post(
            "/api/v1/datasets", files={"file": (path.name, handle)}, headers=api.auth
        )
    assert response.status_code == 201, response.text
    dataset: dict[str, Any] = response.json()
    return dataset


def _refused(api: Api, spec: dict[str, Any]) -> str:
    response = api.client.post("/api/v1/jobs", json=spec, headers=api.auth)
    assert response.status_code == 422, response.text
    return str(response.text)


@pytest.mark.timeout(600)
def test_train_and_expand_on_an_uploaded_npz_and_image_archive(api: Api, tmp_path: Path) -> None:
    npz = _upload(api, write_npz(tmp_path / "features.npz"))
    images = _upload(api, write_tar(tmp_path / "shapes.tar.gz", image_members(20, 4)))
    jobs: dict[str, dict[str, Any]] = {}
    for data_name, ds, model in (
        ("npz", npz, {"width": 8, "depth": 1}),
        ("images", images, {"width": 4, "depth": 1, "norm": "rms"}),
    ):
        for kind in ("train", "expand"):
            spec: dict[str, Any] = {
                "kind": kind,
                "name": f"{data_name}-{kind}",
                "data": {"name": "uploaded", "id": ds["id"] if kind == "train" else ds["sha256"]},
                "model": model,
                "train": TRAIN,
            }
            if kind == "expand":
                spec["expand"] = EXPAND
            jobs[f"{data_name}-{kind}"] = api.submit(spec)
    # The spec travels resolved: the stored file, its address, shape and classes.
    stored = jobs["images-train"]["spec"]
    assert stored["data"]["sha256"] == images["sha256"]
    assert Path(stored["data"]["path"]).name == f"{images['sha256']}.tar.gz"
    assert (stored["data"]["input_shape"], stored["data"]["classes"]) == ([3, 8, 8], 3)
    assert stored["model"]["kind"] == "conv2d"
    assert jobs["npz-train"]["spec"]["model"]["kind"] == "mlp"
    # A data set in use is not deleted.
    busy = api.client.delete(f"/api/v1/datasets/{npz['id']}", headers=api.auth)
    assert busy.status_code == 409 and "used by queued or running jobs" in busy.text

    worker = JobWorker(api.settings, poll_seconds=0.1)
    assert worker.run(max_jobs=len(jobs)) == len(jobs)

    for name, job in jobs.items():
        done = api.client.get(f"/api/v1/jobs/{job['id']}").json()
        assert done["status"] == "succeeded", (name, done["error"])
        result = api.client.get(f"/api/v1/jobs/{job['id']}/artifacts").json()
        assert any(a["name"] == "result.json" for a in result["items"]), name
        assert 0.0 < done["summary"]["test_risk"] < 10.0, (name, done["summary"])
    for name in ("npz-expand", "images-expand"):
        insertions = api.client.get(f"/api/v1/jobs/{jobs[name]['id']}/insertions").json()
        assert len(insertions["items"]) == 2, name  # depth 1: positions 0 and 1, one seed
    gone = api.client.delete(f"/api/v1/datasets/{npz['id']}", headers=api.auth)
    assert gone.status_code == 200, gone.text


def test_specs_naming_unusable_data_are_refused(api: Api, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "small.npz", n_train=12, n_test=4)
    assert "no uploaded data set 99" in _refused(
        api, {"kind": "train", "data": {"name": "uploaded", "id": "99"}}
    )
    assert "needs the data set's id" in _refused(
        api, {"kind": "train", "data": {"name": "uploaded"}}
    )
    # A path over the API would name a file on the service's hosts.
    local = _refused(api, {"kind": "train", "data": {"name": "npz", "path": str(npz)}})
    assert "upload the data set" in local
    small = _upload(api, npz)
    few = _refused(
        api,
        {
            "kind": "expand",
            "data": {"name": "uploaded", "id": small["id"], "certify_fraction": 0.01},
        },
    )
    assert "data.certify_fraction" in few and "no certificate example" in few
    batches = _refused(
        api,
        {
            "kind": "expand",
            "data": {"name": "uploaded", "id": small["id"]},
            "expand": {"grad_batch_size": 8},
        },
    )
    assert "fewer than 2 batches of expand.grad_batch_size=8" in batches


def test_a_worker_reads_the_data_set_from_its_own_mount(tmp_path: Path) -> None:
    from app.worker.loop import local_dataset_path

    sha = "a" * 64
    mount = tmp_path / "worker-artifacts" / "datasets"
    mount.mkdir(parents=True)
    (mount / f"{sha}.npz").write_bytes(b"stored")
    spec = {"data": {"name": "uploaded", "sha256": sha, "path": f"/srv/api/datasets/{sha}.npz"}}
    assert local_dataset_path(spec, mount)["data"]["path"] == str(mount / f"{sha}.npz")
    assert local_dataset_path(spec, tmp_path / "elsewhere") == spec  # not there: unchanged
    builtin = {"data": {"name": "digits"}}
    assert local_dataset_path(builtin, mount) == builtin
