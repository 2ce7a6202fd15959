"""`jumpboard submit --base-job ID` sets `expand.base_job` in the submitted spec, for kind expand
only; `jumpboard run` refuses a spec naming a base job (a job of the service) in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import CliError, main
from app.commands.submit import with_base_job


def test_base_job_goes_into_the_expand_section() -> None:
    spec = {"kind": "expand", "expand": {"seeds": [0]}}
    assert with_base_job(spec, 7) == {"kind": "expand", "expand": {"seeds": [0], "base_job": 7}}
    assert with_base_job({"kind": "expand"}, 3)["expand"] == {"base_job": 3}
    assert with_base_job(spec, None) is spec


def test_base_job_is_refused_for_other_kinds_and_bad_ids() -> None:
    with pytest.raises(CliError, match="--base-job applies to kind expand, not train"):
        with_base_job({"kind": "train"}, 1)
    with pytest.raises(CliError, match="positive integer"):
        with_base_job({"kind": "expand"}, 0)


def test_run_refuses_a_spec_with_a_base_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "expand.yaml"
    spec.write_text("kind: expand\nexpand: {base_job: 4}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "expand.base_job names a job of the service" in capsys.readouterr().err
