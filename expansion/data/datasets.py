"""Data sets as tensors on the training device, seeded splits, on-device batching
(docs/design.md 2).

Small data sets live on the device whole: a per-sample DataLoader is the slow path for them.
Every data set comes back as a `DataBundle` of train/val/test tensors (x float32 in the raw
shape of `expansion.specs.sections.input_shape`'s raw layout, y int64), normalised with
statistics of the training split. `DeviceBatches` batches and augments them on the device.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from expansion.data.shards import epoch_order
from expansion.specs.sections import USER_DATASETS, DataSpec, num_classes
from expansion.userdata.arrays import DataProblem, UserArrays
from expansion.userdata.reading import read_user_data

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path.home() / ".jumpboard" / "data"
"""The one data cache of `jumpboard run` and the service (the service's default
`JUMPBOARD_DATA_DIR`), used when `JUMPBOARD_DATA_DIR` is unset and no folder is passed."""


def default_data_dir() -> Path:
    """`JUMPBOARD_DATA_DIR` when set, else DEFAULT_DATA_DIR (the same folder the service uses)."""
    configured = os.environ.get("JUMPBOARD_DATA_DIR", "").strip()
    return Path(configured).expanduser() if configured else DEFAULT_DATA_DIR


CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"

Sampler = Callable[[int, torch.Generator | None], tuple[torch.Tensor, torch.Tensor]]


class DataError(ValueError):
    """A data set could not be loaded (missing archive, bad format); the message says why."""


@dataclass
class DataBundle:
    """Train/validation/test tensors of one data set, already on the training device."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False
    sampler: Sampler | None = field(default=None, repr=False)
    """`teacher` only: draws fresh labelled samples (population risk estimates)."""
    x_certify: torch.Tensor | None = None
    """The certificate split (`data.certify_fraction`): carved from the training set before
    training, never trained on; None where the spec asks for none."""
    y_certify: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.x_train.device

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Raw shape of one input sample."""
        return tuple(self.x_train.shape[1:])

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh samples from the data distribution (only `teacher` has one)."""
        if self.sampler is None:
            raise DataError(f"data set {self.name!r} has no generator of fresh samples")
        return self.sampler(n, generator)

    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        sizes = {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}
        if self.y_certify is not None:
            sizes["certify"] = len(self.y_certify)
        return sizes

    def certificate_data(
        self, fresh_samples: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(x, y, source) of the certificate batches: fresh samples where the data set has a
        generator (`fresh`, `fresh_samples` of them drawn with `seed`), else the held-out
        certificate split (`holdout`)."""
        if self.sampler is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
            x, y = self.sample(fresh_samples, gen)
            return x.to(self.device), y.to(self.device), "fresh"
        if self.x_certify is None or self.y_certify is None or len(self.y_certify) == 0:
            raise DataError(
                f"data set {self.name!r} was loaded without a certificate split: "
                "set data.certify_fraction > 0"
            )
        return self.x_certify, self.y_certify, "holdout"


# ---- raw sources (numpy, CPU) --------------------------------------------------------------


def _mnist1d_arrays(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D from `mnist1d.data.make_dataset` (offline), cached on disk keyed by its args."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = data_dir / f"mnist1d-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return f["x"], f["y"], f["x_test"], f["y_test"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable MNIST-1D cache %s (%s)", path, exc)
    # make_dataset reseeds numpy's and random's global generators; keep the caller's state.
    import random

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        from mnist1d.utils import ObjectView

        ds = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = ds["x"].astype(np.float32), ds["y"].astype(np.int64)
    x_test, y_test = ds["x_test"].astype(np.float32), ds["y_test"].astype(np.int64)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y, x_test=x_test, y_test=y_test)
        tmp.replace(path)
    except OSError as exc:  # a read-only cache only costs the 2 s of generation
        log.warning("could not cache MNIST-1D under %s (%s)", data_dir, exc)
    return x, y, x_test, y_test


def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits in [0, 1], with a seeded stratified 80/20 test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def _read_cifar_batch(
    path: Path, label_key: str = "labels", what: str = "CIFAR-10"
) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"cannot read {what} batch {path}: {exc}") from None
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(label_key.encode(), batch.get(label_key))
    if data is None or labels is None:
        raise DataError(f"{what} batch {path} has no data/{label_key} entries")
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(labels, dtype=np.int64)


def _cifar10_arrays(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The python-version CIFAR-10 archive from `data_dir/cifar-10-batches-py`, in [0, 1]."""
    folder = data_dir / CIFAR_FOLDER
    train_files = sorted(folder.glob("data_batch_*"))
    if not folder.is_dir() or not train_files or not (folder / "test_batch").exists():
        raise DataError(
            f"CIFAR-10 not found: expected {folder}/data_batch_1..5 and test_batch "
            "(the python-version archive, extracted): set JUMPBOARD_DATA_DIR to the folder "
            f"that holds {CIFAR_FOLDER} (`jumpboard run --data-dir` for one run)"
        )
    parts = [_read_cifar_batch(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    return (
        x.astype(np.float32) / 255.0,
        y,
        x_test.astype(np.float32) / 255.0,
        y_test,
    )


def _cifar100_arrays(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The python-version CIFAR-100 archive from `data_dir/cifar-100-python` (fine labels, 100
    classes), in [0, 1]; the same local layout as CIFAR-10."""
    folder = data_dir / CIFAR100_FOLDER
    if not (folder / "train").exists() or not (folder / "test").exists():
        raise DataError(
            f"CIFAR-100 not found: expected {folder}/train and {folder}/test (the python-version "
            "archive, extracted): set JUMPBOARD_DATA_DIR to the folder that holds "
            f"{CIFAR100_FOLDER} (`jumpboard run --data-dir` for one run)"
        )
    x, y = _read_cifar_batch(folder / "train", "fine_labels", "CIFAR-100")
    x_test, y_test = _read_cifar_batch(folder / "test", "fine_labels", "CIFAR-100")
    return x.astype(np.float32) / 255.0, y, x_test.astype(np.float32) / 255.0, y_test


def _user_arrays(spec: DataSpec) -> UserArrays:
    """A researcher's own data (uploaded, npz or folder) from `spec.path`, checked again (the
    file may have changed since the spec was resolved)."""
    if spec.path is None:
        raise DataError(f"data.name {spec.name} needs data.path")
    try:
        arrays, _ = read_user_data(Path(spec.path))
    except DataProblem as exc:
        raise DataError(f"data set {spec.path}: {exc.reason}") from None
    shape = list(arrays.x_train.shape[1:])
    if spec.input_shape is not None and shape != list(spec.input_shape):
        raise DataError(
            f"data set {spec.path} has samples of shape {shape}, the spec says "
            f"{spec.input_shape}: the data changed since the spec was resolved"
        )
    if spec.classes is not None and arrays.num_classes != spec.classes:
        raise DataError(
            f"data set {spec.path} has {arrays.num_classes} classes, the spec says {spec.classes}"
        )
    return arrays


def _split_given_val(
    x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, spec: DataSpec
) -> tuple[torch.Tensor, ...]:
    """Like `_split` where the data brings its own validation split: the seeded subset and the
    certificate split come from the training examples, `val_fraction` does not apply."""
    gen = torch.Generator().manual_seed(spec.seed)
    perm = torch.randperm(len(y), generator=gen)
    if spec.max_train_samples is not None:
        perm = perm[: spec.max_train_samples]
    n_cert = round(len(perm) * (spec.certify_fraction or 0.0))
    cert_idx, train_idx = perm[:n_cert], perm[n_cert:]
    return x[train_idx], y[train_idx], x_val, y_val, x[cert_idx], y[cert_idx]


# ---- teacher -------------------------------------------------------------------------------


def _teacher_sampler(spec: DataSpec, device: torch.device) -> Sampler:
    """Labels Gaussian inputs by the argmax of a random post-norm network seeded by spec.seed."""
    from expansion.models.network import build_model
    from expansion.specs.sections import ModelSpec

    teacher_model = ModelSpec(
        kind="mlp", width=spec.teacher_width, depth=spec.teacher_depth, norm="layer"
    )
    net = build_model(teacher_model, spec, seed=spec.seed).to(device).eval()
    # A default-initialised head gives small, nearly tied logits: scale it so that the
    # labels are a sharp function of the input and every class occurs.
    with torch.no_grad():
        net.head.weight.mul_(4.0)
    dim = spec.teacher_dim

    @torch.no_grad()
    def sample(
        n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 1, dim, generator=generator, device=device)
        y = torch.cat([net(chunk).argmax(dim=1) for chunk in x.split(8192)])
        return x, y

    return sample


# ---- assembling a bundle -------------------------------------------------------------------


def _split(x: torch.Tensor, y: torch.Tensor, spec: DataSpec) -> tuple[torch.Tensor, ...]:
    """Seeded subset (`max_train_samples`), then a seeded train/validation/certificate split:
    (x_train, y_train, x_val, y_val, x_certify, y_certify). Without a certificate fraction
    the train/validation split is the same as it always was."""
    gen = torch.Generator().manual_seed(spec.seed)
    perm = torch.randperm(len(y), generator=gen)
    if spec.max_train_samples is not None:
        perm = perm[: spec.max_train_samples]
    n_val = max(1, round(len(perm) * spec.val_fraction))
    n_cert = round(len(perm) * (spec.certify_fraction or 0.0))
    val_idx, cert_idx = perm[:n_val], perm[n_val : n_val + n_cert]
    train_idx = perm[n_val + n_cert :]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx], x[cert_idx], y[cert_idx]


def _normalise(x_train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Standardise per channel with the training split's mean and standard deviation."""
    dims = [0, *range(2, x_train.dim())]
    mean = x_train.mean(dim=dims, keepdim=True)
    std = x_train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return tuple((t - mean) / std for t in (x_train, *others))


def load_dataset(
    spec: DataSpec,
    model_kind: str = "conv1d",
    device: torch.device | str = "cpu",
    data_dir: Path | str | None = None,
) -> DataBundle:
    """Load the data set `spec` names, split, normalise and move it to `device`.

    Inputs keep their raw layout (mnist1d (N, 1, 40), digits (N, 1, 8, 8), cifar10
    (N, 3, 32, 32), teacher (N, 1, dim)); the model reshapes them for `model_kind`.
    """
    if model_kind not in ("mlp", "conv1d", "conv2d"):
        raise DataError(f"unknown model kind {model_kind!r}")
    device = torch.device(device)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    sampler: Sampler | None = None
    given_val: tuple[torch.Tensor, torch.Tensor] | None = None
    if spec.name == "teacher":
        sampler = _teacher_sampler(spec, device)
        gen = torch.Generator(device=device).manual_seed(spec.seed + 1)
        x, y = sampler(spec.teacher_train_size, gen)
        x_test, y_test = sampler(spec.teacher_test_size, gen)
        x, y, x_test, y_test = x.cpu(), y.cpu(), x_test.cpu(), y_test.cpu()
    else:
        if spec.name == "mnist1d":
            arrays = _mnist1d_arrays(data_dir)
        elif spec.name == "digits":
            arrays = _digits_arrays(spec.seed)
        elif spec.name == "cifar10":
            arrays = _cifar10_arrays(data_dir)
        elif spec.name == "cifar100":
            arrays = _cifar100_arrays(data_dir)
        elif spec.name in USER_DATASETS:
            user = _user_arrays(spec)
            arrays = (user.x_train, user.y_train, user.x_test, user.y_test)
            if user.x_val is not None and user.y_val is not None:
                given_val = (torch.from_numpy(user.x_val), torch.from_numpy(user.y_val))
        else:  # pragma: no cover - the spec's Literal forbids it
            raise DataError(f"unknown data set {spec.name!r}")
        x, y, x_test, y_test = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        if spec.name in ("mnist1d", "digits") or (spec.name in USER_DATASETS and x.dim() == 2):
            x, x_test = x.unsqueeze(1), x_test.unsqueeze(1)  # a single channel
            if given_val is not None:
                given_val = (given_val[0].unsqueeze(1), given_val[1])
    if given_val is not None:
        x_train, y_train, x_val, y_val, x_cert, y_cert = _split_given_val(
            x.float(), y.long(), given_val[0].float(), given_val[1].long(), spec
        )
    else:
        x_train, y_train, x_val, y_val, x_cert, y_cert = _split(x.float(), y.long(), spec)
    if spec.name != "teacher":  # teacher inputs are standard Gaussian already
        x_train, x_val, x_test, x_cert = _normalise(x_train, x_val, x_test.float(), x_cert)
    bundle = DataBundle(
        name=spec.name,
        x_train=x_train.contiguous().to(device),
        y_train=y_train.to(device),
        x_val=x_val.contiguous().to(device),
        y_val=y_val.to(device),
        x_test=x_test.float().contiguous().to(device),
        y_test=y_test.long().to(device),
        num_classes=num_classes(spec),
        augment=spec.augment,
        sampler=sampler,
        x_certify=x_cert.contiguous().to(device) if len(y_cert) else None,
        y_certify=y_cert.to(device) if len(y_cert) else None,
    )
    log.debug("loaded %s: %s on %s", spec.name, bundle.sizes(), device)
    return bundle


# ---- on-device augmentation and batching ---------------------------------------------------


def _shift_last_dim(x: torch.Tensor, shifts: torch.Tensor, dim: int) -> torch.Tensor:
    """Translate each sample along `dim` by its shift, filling with the sample's edge value."""
    n, length = x.shape[0], x.shape[dim]
    idx = torch.arange(length, device=x.device).expand(n, length) - shifts[:, None]
    idx = idx.clamp(0, length - 1)  # replicate the edge instead of wrapping around
    view = [n] + [1] * (x.dim() - 1)
    view[dim] = length
    expand = list(x.shape)
    return x.gather(dim, idx.reshape(view).expand(expand))


def random_shift(
    x: torch.Tensor, max_shift: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Shift every spatial axis of each sample by a random amount in [-max_shift, max_shift]."""
    for dim in range(2, x.dim()):
        shifts = torch.randint(
            -max_shift, max_shift + 1, (x.shape[0],), generator=generator, device=x.device
        )
        x = _shift_last_dim(x, shifts, dim)
    return x


def random_crop_flip(
    x: torch.Tensor, padding: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Random crop from a zero-padded image, then a random horizontal flip (CIFAR-style)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded.gather(2, rows.expand(n, x.shape[1], h, padded.shape[3]))
    out = out.gather(3, cols.expand(n, x.shape[1], h, w))
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def augmentation_for(name: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The on-device augmentation of a data set, or None where none makes sense (teacher)."""
    if name == "mnist1d":
        return lambda x, g: random_shift(x, 3, g)
    if name == "digits":
        return lambda x, g: random_shift(x, 1, g)
    if name in ("cifar10", "cifar100"):
        return lambda x, g: random_crop_flip(x, 4, g)
    return None


class DeviceBatches:
    """Iterates (x, y) batches of device tensors; a new seeded permutation every epoch.

    Epoch e uses the generator seeded with (seed, e), so the data order is a function of the
    seed and the epoch alone. One process's batches; `expansion.data.shards.RankShards` splits
    the same batches across DDP ranks.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.augment = shuffle, seed, augment
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of `epoch` for the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.x.device
        gen, order = epoch_order(len(self.y), self.seed, self.epoch, self.shuffle, device)
        self.epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = self.x[idx], self.y[idx]
            if self.augment is not None:
                x = self.augment(x, gen)
            yield x, y
