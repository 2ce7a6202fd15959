"""Expand defaults that never fail late: the gradient batch size follows from the certificate
split, the split sizes are known from the spec, and a spec that would fail after training is
refused before it."""

from __future__ import annotations

from typing import Any

import pytest

from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError
from expansion.specs.split_sizes import split_sizes


def expand(raw: dict[str, Any]) -> ExpandExperiment:
    """`raw` (kind expand) parsed into its typed spec."""
    spec = parse_spec({"kind": "expand", **raw})
    assert isinstance(spec, ExpandExperiment)
    return spec


def problems(raw: dict[str, Any]) -> list[str]:
    """The problems `validate` and the API's 422 name for `raw` (kind expand)."""
    with pytest.raises(SpecError) as caught:
        parse_spec({"kind": "expand", **raw})
    return caught.value.problems


def test_split_sizes_match_the_data_module_on_digits() -> None:
    from expansion.data.datasets import load_dataset

    spec = expand({"data": {"name": "digits"}})
    sizes = split_sizes(spec.data)
    bundle = load_dataset(spec.data, spec.model.kind)
    assert bundle.x_certify is not None
    assert (sizes.train, sizes.val, sizes.certify) == (
        len(bundle.y_train),
        len(bundle.y_val),
        len(bundle.x_certify),
    )


@pytest.mark.parametrize(
    ("name", "size"),
    [("mnist1d", 100), ("digits", 35), ("teacher", 256)],
)
def test_grad_batch_size_follows_from_the_certificate_split(name: str, size: int) -> None:
    spec = expand({"data": {"name": name}})
    assert spec.expand.grad_batch_size == size == spec.grad_batch_size
    if name != "teacher":
        assert split_sizes(spec.data).certify // size >= spec.expand.min_certificate_batches


def test_an_explicit_grad_batch_size_is_kept() -> None:
    spec = expand({"expand": {"grad_batch_size": 64}})
    assert spec.grad_batch_size == 64


def test_a_certificate_split_too_small_is_refused_before_training() -> None:
    found = problems({"data": {"name": "digits"}, "expand": {"grad_batch_size": 256}})
    assert any(
        p.startswith("expand.grad_batch_size: the certificate split has 287 samples") for p in found
    )


def test_top_k_above_the_positions_is_refused() -> None:
    found = problems({"model": {"kind": "conv1d", "depth": 4}, "expand": {"top_k": 9}})
    assert "expand.top_k: top_k 9 is more than the 5 positions" in " ".join(found)
