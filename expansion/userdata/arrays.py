"""A researcher's own data as numpy arrays, and the checks every one of them passes.

Torch-free (numpy only): the service validates uploads with it in the API process, the job's
process turns the same arrays into tensors (`expansion.data.datasets`). A `.npz` holds
`x_train`, `y_train`, `x_test`, `y_test` and optionally `x_val`, `y_val` (and `num_classes`);
it is read with `allow_pickle=False`, after its members' unpacked sizes were checked.
"""

from __future__ import annotations

import enum
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MIN_TRAIN_EXAMPLES = 10
"""Fewest training examples (validation ones included) a data set may have."""

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_NPZ_ARRAYS = ("x_val", "y_val", "num_classes")


class DataFormat(enum.StrEnum):
    """How a data set is stored."""

    NPZ = "npz"
    IMAGE_ARCHIVE = "image_archive"
    IMAGE_FOLDER = "image_folder"


class DataProblem(ValueError):
    """A data set that cannot be used; `reason` says why, in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive (an image folder's `.tar`/`.zip`, a `.npz`) may unpack to."""

    max_members: int = 200_000
    max_unpacked_bytes: int = 4 << 30
    max_image_pixels: int = 4096 * 4096


FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]


@dataclass
class UserArrays:
    """Inputs (float32, one sample's raw shape after the first axis) and int64 labels."""

    x_train: FloatArray
    y_train: LabelArray
    x_test: FloatArray
    y_test: LabelArray
    num_classes: int
    x_val: FloatArray | None = None
    y_val: LabelArray | None = None


@dataclass(frozen=True)
class DataSummary:
    """What the spec needs to know about a data set, inferred from it."""

    format: DataFormat
    input_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    val_size: int
    test_size: int

    @property
    def model_kind(self) -> str:
        """The network for this data: `conv2d` for images, `conv1d` for sequences, else `mlp`."""
        return {3: "conv2d", 2: "conv1d"}.get(len(self.input_shape), "mlp")

    def spec_fields(self) -> dict[str, Any]:
        """The `data` fields a spec naming this data set gets."""
        return {
            "input_shape": list(self.input_shape),
            "classes": self.num_classes,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "test_size": self.test_size,
        }


def check_zip_members(path: Path, limits: ArchiveLimits, what: str) -> None:
    """Refuse a zip (a `.npz` too) whose member count or declared unpacked size is over the
    limits, before anything is unpacked."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataProblem(f"not a readable {what}: {exc}") from None
    if len(infos) > limits.max_members:
        raise DataProblem(
            f"{what} holds {len(infos)} files, over the limit of {limits.max_members}"
        )
    unpacked = sum(info.file_size for info in infos)
    if unpacked > limits.max_unpacked_bytes:
        raise DataProblem(
            f"{what} unpacks to {unpacked} bytes, over the limit of {limits.max_unpacked_bytes}"
        )


def read_npz(path: Path, limits: ArchiveLimits | None = None) -> UserArrays:
    """The arrays of a `.npz` data set, checked (`check_arrays`)."""
    check_zip_members(path, limits or ArchiveLimits(), "npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing = [n for n in NPZ_ARRAYS if n not in names]
            if missing:
                raise DataProblem(
                    f"npz file lacks {', '.join(missing)} (needs x_train, y_train, x_test, "
                    f"y_test; x_val, y_val and num_classes are optional; has "
                    f"{', '.join(sorted(names)) or 'nothing'})"
                )
            unknown = names - set(NPZ_ARRAYS) - set(OPTIONAL_NPZ_ARRAYS)
            if unknown:
                raise DataProblem(f"npz file has unknown arrays: {', '.join(sorted(unknown))}")
            loaded = {n: npz[n] for n in sorted(names)}
    except DataProblem:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataProblem(
                "npz file holds object arrays, which need pickle: store numeric arrays only"
            ) from None
        raise DataProblem(f"not a readable npz file: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataProblem(f"not a readable npz file: {exc}") from None
    declared: int | None = None
    if "num_classes" in loaded:
        value = loaded.pop("num_classes")
        if value.shape != () or value.dtype.kind not in "iu":
            raise DataProblem("num_classes must be a single integer")
        declared = int(value)
    if ("x_val" in loaded) != ("y_val" in loaded):
        raise DataProblem("x_val and y_val come together or not at all")
    return check_arrays(loaded, declared)


def _inputs(name: str, x: npt.NDArray[Any]) -> FloatArray:
    if x.dtype.kind not in "fiub":
        raise DataProblem(f"{name} must be numeric, not dtype {x.dtype}")
    if x.ndim < 2 or x.ndim > 4:
        raise DataProblem(
            f"{name} must have shape (examples, features), (examples, channels, length) or "
            f"(examples, channels, height, width), not {x.shape}"
        )
    out = np.asarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise DataProblem(f"{name} holds {bad} NaN or infinite values")
    return out


def _labels(name: str, y: npt.NDArray[Any], n: int) -> LabelArray:
    if y.dtype.kind not in "iu":
        raise DataProblem(f"{name} must hold integer class labels, not dtype {y.dtype}")
    if y.ndim != 1:
        raise DataProblem(f"{name} must be one label per example, shape (examples,), not {y.shape}")
    if len(y) != n:
        raise DataProblem(f"{name} has {len(y)} labels but x_{name[2:]} has {n} examples")
    return np.asarray(y, dtype=np.int64)


def check_arrays(arrays: dict[str, npt.NDArray[Any]], declared_classes: int | None) -> UserArrays:
    """Check shapes, dtypes, finiteness, lengths and label ranges; return the typed arrays."""
    splits = ["train", "test"] + (["val"] if "x_val" in arrays else [])
    xs = {s: _inputs(f"x_{s}", arrays[f"x_{s}"]) for s in splits}
    ys = {s: _labels(f"y_{s}", arrays[f"y_{s}"], len(xs[s])) for s in splits}
    shape = xs["train"].shape[1:]
    for s in splits:
        if xs[s].shape[1:] != shape:
            raise DataProblem(
                f"x_{s} samples have shape {xs[s].shape[1:]}, x_train samples {shape}"
            )
    if len(ys["train"]) < MIN_TRAIN_EXAMPLES:
        raise DataProblem(
            f"x_train has {len(ys['train'])} examples; at least {MIN_TRAIN_EXAMPLES} are needed"
        )
    if len(ys["test"]) < 1:
        raise DataProblem("x_test has no examples")
    for s in splits:
        if len(ys[s]) and int(ys[s].min()) < 0:
            raise DataProblem(f"y_{s} holds negative labels (labels are 0 .. classes-1)")
    classes = declared_classes if declared_classes is not None else int(ys["train"].max()) + 1
    if classes < 2:
        raise DataProblem(f"the labels give {classes} class; at least 2 are needed")
    for s in splits:
        top = int(ys[s].max()) if len(ys[s]) else -1
        if top >= classes:
            source = (
                "num_classes" if declared_classes is not None else "y_train's largest label + 1"
            )
            raise DataProblem(f"y_{s} holds label {top}, outside the {classes} classes ({source})")
    return UserArrays(
        x_train=xs["train"],
        y_train=ys["train"],
        x_test=xs["test"],
        y_test=ys["test"],
        num_classes=classes,
        x_val=xs.get("val"),
        y_val=ys.get("val"),
    )


def summarize(arrays: UserArrays, fmt: DataFormat) -> DataSummary:
    """The spec-facing summary of checked arrays."""
    shape = tuple(int(n) for n in arrays.x_train.shape[1:])
    return DataSummary(
        format=fmt,
        input_shape=shape,
        num_classes=arrays.num_classes,
        train_size=len(arrays.y_train),
        val_size=0 if arrays.y_val is None else len(arrays.y_val),
        test_size=len(arrays.y_test),
    )
