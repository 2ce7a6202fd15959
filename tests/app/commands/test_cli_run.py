"""`jumpboard validate` and `jumpboard run` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

TINY = """\
name: tiny
data: {name: digits, max_train_samples: 300}
model: {kind: mlp, width: 16, depth: 1}
train: {epochs: 2, batch_size: 64, accelerator: cpu}
"""

MALFORMED = """\
data: {name: imagenet}
model: {width: -3, depth: 100000, kernel_size: five, colour: red}
"""


def jumpboard(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from app.cli import main; rc = main(sys.argv[1:]); "
    code += "print('torch imported' if 'torch' in sys.modules else '', file=sys.stderr); "
    code += "sys.exit(rc)"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_validate_lists_every_problem_one_line_each(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(MALFORMED)
    proc = jumpboard("validate", str(spec))
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    fields = sorted(line.split(": ")[1] for line in lines)
    assert fields == [
        "data.name",
        "model.colour",
        "model.depth",
        "model.kernel_size",
        "model.width",
    ]
    assert all(line.startswith(f"{spec}: ") for line in lines)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "torch imported" not in proc.stderr


def test_validate_a_good_spec_prints_its_cost(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    proc = jumpboard("validate", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "valid train spec" in proc.stdout
    assert "parameters:" in proc.stdout and "1,754" in proc.stdout
    assert "torch imported" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        ("model: [unclosed\n", "broken.yaml", "not valid YAML"),
        ('{"model": ', "broken.json", "not valid JSON"),
        ("- just\n- a list\n", "list.yaml", "must be a mapping"),
    ],
)
def test_unreadable_specs_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, name: str, expected: str
) -> None:
    spec = tmp_path / name
    spec.write_text(content)
    assert main(["validate", str(spec)]) != 0
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert main(["validate", str(tmp_path / "missing.yaml")]) != 0
    assert "cannot read" in capsys.readouterr().err


def test_run_writes_result_json_and_prints_test_risk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out), "--data-dir", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["kind"] == "train" and result["spec"]["name"] == "tiny"
    assert f"test risk {result['test_risk']:.4f}" in printed
    assert 0.0 <= result["test_error"] <= 1.0 and result["parameters"] == 1754
    assert result["artifacts"] == ["base.ckpt"] and (out / "base.ckpt").is_file()
    assert result["curves"]["val/loss"] and result["curves"]["train/loss"]
    assert set(result["timings"]) >= {"total_s", "train_s"}


def test_run_refuses_an_invalid_spec_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(MALFORMED)
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 5
    assert not (tmp_path / "run").exists()


def test_run_reports_missing_cifar_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "cifar.yaml"
    spec.write_text("data: {name: cifar10}\nmodel: {kind: conv2d, width: 4, depth: 1}\n")
    assert (
        main(["run", str(spec), "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "Traceback" not in err


def test_expand_from_a_trained_base_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    train_spec = tmp_path / "tiny.yaml"
    # The base holds out the same certificate split the expand run certifies on.
    train_spec.write_text(
        TINY.replace("max_train_samples: 300}", "max_train_samples: 300, certify_fraction: 0.2}")
    )
    assert main(["run", str(train_spec), "--out", str(tmp_path / "base"), *data]) == 0
    base = tmp_path / "base" / "base.ckpt"
    expand_spec = tmp_path / "expand.yaml"
    expand_spec.write_text(
        TINY.replace("name: tiny", "kind: expand\nname: tiny-expand")
        + "expand: {select: all, seeds: [0], continue_steps: 3, grad_batch_size: 16}\n"
    )
    out = tmp_path / "expand"
    assert main(["run", str(expand_spec), "--out", str(out), "--base", str(base), *data]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["timings"]["train_s"] == 0.0  # the base was loaded, not trained
    assert not (out / "base.ckpt").exists()
    assert [r["position"] for r in result["insertions"]] == [0, 1]
    printed = capsys.readouterr().out
    assert "realized gain vs control" in printed
    assert printed.strip().splitlines()[-1].startswith("answer: ")
    assert main(["validate", str(expand_spec), "--base", str(base)]) == 0

    assert main(["run", str(train_spec), "--out", str(tmp_path / "x"), "--base", str(base)]) == 2
    assert "--base applies to kind expand" in capsys.readouterr().err
    # A base trained on the whole training set has seen the certificate split: refused.
    plain = tmp_path / "plain.yaml"
    plain.write_text(TINY)
    assert main(["run", str(plain), "--out", str(tmp_path / "plain"), *data]) == 0
    plain_base = str(tmp_path / "plain" / "base.ckpt")
    assert main(["run", str(expand_spec), "--out", str(tmp_path / "z"), "--base", plain_base]) != 0
    assert "trained on other splits" in capsys.readouterr().err
    # `validate --base` says the same before anything trains.
    assert main(["validate", str(expand_spec), "--base", plain_base]) == 2
    assert "trained on other splits" in capsys.readouterr().err
    missing = str(tmp_path / "missing.ckpt")
    assert main(["run", str(expand_spec), "--out", str(tmp_path / "y"), "--base", missing]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_a_multi_node_spec_outside_a_launcher_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "nodes.yaml"
    spec.write_text(TINY.replace("accelerator: cpu}", "accelerator: cpu, num_nodes: 2}"))
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "train.num_nodes is 2: a multi-node run is started by an external launcher" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "result.json").exists()
