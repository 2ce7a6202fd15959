"""Data sets as device tensors: splits, normalisation, caching, formats, on-device batching."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from expansion.data.datasets import (
    DataError,
    DeviceBatches,
    augmentation_for,
    load_dataset,
    random_crop_flip,
    random_shift,
)
from expansion.specs.sections import DataSpec


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jumpboard-data")


def test_mnist1d_sizes_types_split_and_cache(data_dir: Path) -> None:
    bundle = load_dataset(DataSpec(name="mnist1d", val_fraction=0.1), "conv1d", "cpu", data_dir)
    assert bundle.sizes() == {"train": 3600, "val": 400, "test": 1000}
    assert bundle.x_train.shape == (3600, 1, 40) and bundle.x_train.dtype == torch.float32
    assert bundle.y_train.dtype == torch.int64 and bundle.num_classes == 10
    assert set(bundle.y_test.tolist()) == set(range(10))
    # normalised with training statistics
    assert abs(float(bundle.x_train.mean())) < 1e-4
    assert float(bundle.x_train.std()) == pytest.approx(1.0, abs=1e-3)
    cached = list(data_dir.glob("mnist1d-*.npz"))
    assert len(cached) == 1
    again = load_dataset(DataSpec(name="mnist1d"), "mlp", "cpu", data_dir)
    assert torch.equal(again.x_test, bundle.x_test)


def test_split_is_seeded_disjoint_and_capped(data_dir: Path) -> None:
    a = load_dataset(DataSpec(name="digits", seed=3, max_train_samples=500), "mlp", "cpu", data_dir)
    b = load_dataset(DataSpec(name="digits", seed=3, max_train_samples=500), "mlp", "cpu", data_dir)
    c = load_dataset(DataSpec(name="digits", seed=4, max_train_samples=500), "mlp", "cpu", data_dir)
    assert a.sizes() == {"train": 450, "val": 50, "test": 360}
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_train, c.y_train)
    rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in rows for r in a.x_val.flatten(1))


def test_digits_has_a_stratified_test_split(data_dir: Path) -> None:
    bundle = load_dataset(DataSpec(name="digits"), "conv2d", "cpu", data_dir)
    assert bundle.x_train.shape[1:] == (1, 8, 8)
    assert len(bundle.y_test) == 360
    counts = torch.bincount(bundle.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_teacher_labels_fresh_samples_by_the_same_network(data_dir: Path) -> None:
    spec = DataSpec(name="teacher", teacher_dim=12, teacher_classes=4, teacher_train_size=400)
    bundle = load_dataset(spec, "mlp", "cpu", data_dir)
    assert bundle.x_train.shape == (360, 1, 12) and bundle.num_classes == 4
    assert len(set(bundle.y_train.tolist())) == 4
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x1, y1 = bundle.sample(300, g1)
    x2, y2 = load_dataset(spec, "mlp", "cpu", data_dir).sample(300, g2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = load_dataset(spec.model_copy(update={"seed": 1}), "mlp", "cpu", data_dir)
    assert not torch.equal(other.sample(300, torch.Generator().manual_seed(5))[1], y1)
    with pytest.raises(DataError, match="fresh samples"):
        load_dataset(DataSpec(name="digits"), "mlp", "cpu", data_dir).sample(3)


def write_tiny_cifar(root: Path, per_batch: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=per_batch)],
            b"batch_label": name.encode(),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)


def test_cifar10_reads_the_python_archive(tmp_path: Path) -> None:
    write_tiny_cifar(tmp_path)
    bundle = load_dataset(DataSpec(name="cifar10", val_fraction=0.2), "conv2d", "cpu", tmp_path)
    assert bundle.sizes() == {"train": 80, "val": 20, "test": 20}
    assert bundle.x_train.shape[1:] == (3, 32, 32)
    per_channel = bundle.x_train.transpose(0, 1).flatten(1).mean(dim=1)
    assert per_channel.abs().max() < 1e-4


def test_cifar10_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset(DataSpec(name="cifar10"), "conv2d", "cpu", tmp_path)


def test_device_batches_cover_every_sample_once_per_epoch() -> None:
    x = torch.arange(50, dtype=torch.float32).reshape(50, 1, 1)
    y = torch.arange(50)
    batches = DeviceBatches(x, y, 16, seed=2)
    assert len(batches) == 4
    epoch0 = torch.cat([yb for _, yb in batches])
    epoch1 = torch.cat([yb for _, yb in batches])
    assert sorted(epoch0.tolist()) == list(range(50))
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(
        torch.cat([xb for xb, _ in DeviceBatches(x, y, 16, seed=2)]).flatten(), epoch0.float()
    )
    replay = DeviceBatches(x, y, 16, seed=2)
    assert torch.equal(torch.cat([yb for _, yb in replay]), epoch0)
    assert len(DeviceBatches(x, y, 16, drop_last=True)) == 3


def test_augmentations_keep_shapes_and_move_content() -> None:
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(64, 1, 40)
    shifted = random_shift(seq, 3, g)
    assert shifted.shape == seq.shape and not torch.equal(shifted, seq)
    img = torch.randn(64, 3, 32, 32)
    cropped = random_crop_flip(img, 4, g)
    assert cropped.shape == img.shape and not torch.equal(cropped, img)
    # a shift by zero is the identity
    assert torch.equal(random_shift(seq, 0, g), seq)
    assert augmentation_for("teacher") is None
    digits_augmentation = augmentation_for("digits")
    assert digits_augmentation is not None
    assert digits_augmentation(torch.randn(4, 1, 8, 8), g).shape == (4, 1, 8, 8)


def test_certificate_split_is_carved_before_training_and_disjoint(data_dir: Path) -> None:
    plain = load_dataset(DataSpec(name="digits", seed=3, max_train_samples=500), "mlp", "cpu")
    spec = DataSpec(name="digits", seed=3, max_train_samples=500, certify_fraction=0.2)
    bundle = load_dataset(spec, "mlp", "cpu", data_dir)
    assert bundle.sizes() == {"train": 350, "val": 50, "certify": 100, "test": 360}
    assert torch.equal(bundle.y_val, plain.y_val)  # the validation split does not move
    assert bundle.x_certify is not None and bundle.y_certify is not None
    train = {tuple(r.tolist()) for r in bundle.x_train.flatten(1)}
    held = [tuple(r.tolist()) for r in bundle.x_certify.flatten(1)]
    assert not any(r in train for r in held)
    _, y, source = bundle.certificate_data(64, seed=0)
    assert source == "holdout" and torch.equal(y, bundle.y_certify)
    with pytest.raises(DataError, match="certify_fraction"):
        plain.certificate_data(64, seed=0)


def test_teacher_certificate_draws_fresh_samples(data_dir: Path) -> None:
    spec = DataSpec(name="teacher", teacher_train_size=64, teacher_test_size=32)
    bundle = load_dataset(spec, "mlp", "cpu", data_dir)
    x, y, source = bundle.certificate_data(40, seed=5)
    again, _, _ = bundle.certificate_data(40, seed=5)
    assert source == "fresh" and x.shape == (40, 1, spec.teacher_dim) and len(y) == 40
    assert torch.equal(x, again)  # seeded
    train = {tuple(r.tolist()) for r in bundle.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in train for r in x.flatten(1))
