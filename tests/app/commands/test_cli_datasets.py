"""Your own data through the CLI: `jumpboard datasets upload|list|show|delete` against a real
`jumpboard serve` with train and expand jobs on an uploaded `.npz` and image archive
(`submit --wait`), and `jumpboard validate`/`run` on `data: {name: npz|folder, path}` without a
server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from local_server import Served
from user_data_files import image_members, write_folder, write_npz, write_tar

from app.cli import main

MODELS = {"npz": "{width: 8, depth: 1}", "images": "{width: 4, depth: 1, norm: rms}"}
EXPAND = (
    "expand: {select: all, seeds: [0], continue_steps: 3, grad_batch_size: 4, "
    "line_search_points: 2}\n"
)


def _spec(kind: str, data: str, model: str) -> str:
    text = (
        f"kind: {kind}\nname: cli-{kind}\ndata: {data}\nmodel: {model}\n"
        "train: {epochs: 2, batch_size: 16, accelerator: cpu}\n"
    )
    return text + (EXPAND if kind == "expand" else "")


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_datasets_upload_then_train_and_expand_on_them(
    cli_env: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "npz": write_npz(tmp_path / "features.npz"),
        "images": write_tar(tmp_path / "shapes.tar.gz", image_members(20, 4)),
    }
    for label, path in files.items():
        assert main(["datasets", "upload", str(path), "--json"]) == 0
        dataset = _json(capsys)
        assert dataset["name"] == path.name
        for kind in ("train", "expand"):
            spec = tmp_path / f"{label}-{kind}.yaml"
            spec.write_text(
                _spec(kind, f'{{name: uploaded, id: "{dataset["id"]}"}}', MODELS[label])
            )
            assert main(["submit", str(spec), "--wait", "--json"]) == 0
            job = _json(capsys)
            assert job["status"] == "succeeded", job.get("error")
            assert job["spec"]["data"]["sha256"] == dataset["sha256"]
        assert main(["datasets", "show", dataset["sha256"]]) == 0
        shown = capsys.readouterr().out
        assert f"data set {dataset['id']}" in shown and "in a spec: data: {name: uploaded" in shown
        assert main(["datasets", "delete", str(dataset["id"]), "--json"]) == 0
        assert _json(capsys)["id"] == dataset["id"]
    assert main(["datasets", "list", "--json"]) == 0
    assert _json(capsys) == []
    assert main(["datasets", "show", "424242"]) == 1  # refused by the server: one line
    assert "not found" in capsys.readouterr().err


def test_validate_and_run_on_a_local_npz_and_image_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_npz(tmp_path / "features.npz")
    folder = write_folder(tmp_path / "images", image_members(12, 3))
    cases = [
        ("npz", "{name: npz, path: features.npz}", MODELS["npz"], "mlp"),
        ("folder", f"{{name: folder, path: {folder}}}", MODELS["images"], "conv2d"),
    ]
    for label, data, model, kind in cases:
        spec = tmp_path / f"{label}.yaml"
        spec.write_text(_spec("train", data, model))
        assert main(["validate", str(spec), "--json"]) == 0
        report = _json(capsys)
        assert report["spec"]["model"]["kind"] == kind
        out = tmp_path / f"run-{label}"
        assert main(["run", str(spec), "--out", str(out)]) == 0
        result = json.loads((out / "result.json").read_text())
        assert 0.0 < result["test_risk"] < 10.0
        capsys.readouterr()
    broken = tmp_path / "broken.yaml"
    write_npz(tmp_path / "nan.npz", x_test=[[float("nan")] * 12] * 32)
    broken.write_text(_spec("train", "{name: npz, path: nan.npz}", MODELS["npz"]))
    assert main(["validate", str(broken)]) == 1
    assert "data.path: x_test holds 384 NaN or infinite values" in capsys.readouterr().out


@pytest.mark.slow
def test_submit_uploads_a_local_image_folder_first(
    cli_env: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "mine", image_members(20, 4))
    spec = tmp_path / "local.yaml"
    spec.write_text(_spec("train", f"{{name: folder, path: {folder.name}}}", MODELS["images"]))
    (tmp_path / folder.name).symlink_to(folder)  # relative to the spec file's folder
    assert main(["submit", str(spec), "--json"]) == 0
    captured = capsys.readouterr()
    job = json.loads(captured.out)
    assert "uploaded" in captured.err
    assert job["spec"]["data"]["name"] == "uploaded"
    assert job["spec"]["data"]["input_shape"] == [3, 8, 8]
    assert main(["jobs", "cancel", str(job["id"])]) == 0
