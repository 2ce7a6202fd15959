"""Your own data into tensors: an image folder with its own validation split, grayscale images
as one channel, a `.npz` with x_val, and CIFAR-100 from the CIFAR-10 layout's sibling folder
(a generated miniature in the real python-version format)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from user_data_files import COLORS, png_bytes, write_folder, write_npz

from expansion.data.datasets import load_dataset
from expansion.specs.parsing import parse_spec
from expansion.specs.sections import DataSpec
from expansion.userdata.reading import inspect_user_data, resolve_local_data


def test_image_folder_with_its_own_validation_split_in_grayscale(tmp_path: Path) -> None:
    members = {}
    for name, color in COLORS.items():
        for split, n in (("train", 10), ("val", 2), ("test", 3)):
            for i in range(n):
                members[f"shapes/{split}/{name}/{i}.png"] = png_bytes(color, 6, "L")
    folder = write_folder(tmp_path, members)
    summary = inspect_user_data(folder)
    assert (summary.input_shape, summary.num_classes) == ((1, 6, 6), 3)
    assert (summary.train_size, summary.val_size, summary.test_size) == (30, 6, 9)
    raw = resolve_local_data({"kind": "train", "data": {"name": "folder", "path": str(folder)}})
    spec = parse_spec(raw)
    assert spec.model.kind == "conv2d"
    bundle = load_dataset(spec.data, spec.model.kind)
    assert bundle.sizes() == {"train": 30, "val": 6, "test": 9}  # val_fraction does not apply
    assert tuple(bundle.x_train.shape[1:]) == (1, 6, 6) and bundle.num_classes == 3


def test_npz_with_validation_arrays_and_a_certificate_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = write_npz(
        tmp_path / "v.npz", x_val=rng.normal(size=(7, 12)), y_val=rng.integers(0, 3, 7)
    )
    raw = resolve_local_data(
        {
            "kind": "expand",
            "data": {"name": "npz", "path": str(path)},
            "expand": {"grad_batch_size": 8},
        }
    )
    spec = parse_spec(raw)
    bundle = load_dataset(spec.data, spec.model.kind)
    assert bundle.sizes() == {"train": 77, "val": 7, "test": 32, "certify": 19}


def test_a_changed_file_is_noticed(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "a.npz")
    data = DataSpec.model_validate(
        resolve_local_data({"data": {"name": "npz", "path": str(path)}})["data"]
    )
    write_npz(path, x_train=np.zeros((96, 5)), x_test=np.zeros((32, 5)))
    with pytest.raises(ValueError, match="the data changed since the spec was resolved"):
        load_dataset(data, "mlp")


def test_cifar100_reads_the_python_version_layout(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": list(rng.integers(0, 100, n)),
            b"coarse_labels": list(rng.integers(0, 20, n)),
        }
        (folder / split).write_bytes(pickle.dumps(batch))
    spec = parse_spec({"kind": "train", "data": {"name": "cifar100"}})
    assert spec.model.kind == "conv2d"
    bundle = load_dataset(spec.data, spec.model.kind, data_dir=tmp_path)
    assert bundle.num_classes == 100
    assert tuple(bundle.x_train.shape[1:]) == (3, 32, 32)
    assert bundle.sizes()["test"] == 10
    with pytest.raises(ValueError, match="CIFAR-100 not found"):
        load_dataset(spec.data, spec.model.kind, data_dir=tmp_path / "empty")
