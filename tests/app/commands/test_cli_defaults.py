"""Shipped defaults: `run --out` keeps earlier results unless --force, one data folder for `run`
and the service, the CIFAR-10 message names the setting, image data defaults to conv2d."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.settings import Settings
from expansion.data.datasets import DataError, default_data_dir, load_dataset
from expansion.specs.parsing import parse_spec
from expansion.specs.sections import DataSpec


def test_run_refuses_to_overwrite_a_result_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("kind: train\ndata: {name: digits}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("{}")
    assert main(["run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a result" in err and "--force" in err
    assert (out / "result.json").read_text() == "{}"


def test_run_and_the_service_share_one_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUMPBOARD_DATA_DIR", raising=False)
    assert default_data_dir() == Settings().data_dir
    monkeypatch.setenv("JUMPBOARD_DATA_DIR", "/srv/data")
    assert default_data_dir() == Path("/srv/data") == Settings().data_dir


def test_missing_cifar_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="JUMPBOARD_DATA_DIR"):
        load_dataset(DataSpec(name="cifar10"), "conv2d", "cpu", tmp_path)


def test_image_data_defaults_to_conv2d_and_sequences_to_conv1d() -> None:
    assert parse_spec({"data": {"name": "digits"}}).model.kind == "conv2d"
    assert parse_spec({"data": {"name": "digits"}}).model.kernel_size == 3
    assert (
        parse_spec({"data": {"name": "cifar10"}, "model": {"kernel_size": 5}}).model.kernel_size
        == 5
    )
    assert parse_spec({"data": {"name": "digits"}, "model": {"width": 8}}).model.kind == "conv2d"
    assert parse_spec({"data": {"name": "digits"}, "model": {"kind": "mlp"}}).model.kind == "mlp"
    assert parse_spec({"data": {"name": "mnist1d"}}).model.kind == "conv1d"
    assert parse_spec({}).model.kind == "conv1d"


def test_validate_json_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    spec = tmp_path / "bad.yaml"
    spec.write_text("kind: expand\nmodel: {width: 0, stages: 2}\nexpand: {seeds: [1, 1]}\n")
    assert main(["validate", str(spec), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert sorted(report["problems"]) == [
        "expand.seeds: seeds must be distinct",
        "model.stages: stages > 1 is only defined for kind conv2d",
        "model.width: Input should be greater than or equal to 1",
    ]
    good = tmp_path / "good.yaml"
    good.write_text("data: {name: digits}\n")
    assert main(["validate", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"]["model"]["kind"] == "conv2d" and report["cost"]["parameters"] > 0
