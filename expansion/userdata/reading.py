"""One entry point for a researcher's own data: read a `.npz`, an image folder or an image
archive by path, and fill a raw spec's `data` section with what the data says about itself."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from expansion.userdata.arrays import (
    ArchiveLimits,
    DataFormat,
    DataProblem,
    DataSummary,
    UserArrays,
    read_npz,
    summarize,
)
from expansion.userdata.images import read_image_folder


def detect_format(path: Path) -> DataFormat:
    """`npz` for a zip of `.npy` arrays, `image_folder` for a folder, else `image_archive`."""
    if path.is_dir():
        return DataFormat.IMAGE_FOLDER
    if path.suffix.lower() == ".npz":
        return DataFormat.NPZ
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return DataFormat.IMAGE_ARCHIVE
        if names and all(n.endswith(".npy") for n in names):
            return DataFormat.NPZ
    return DataFormat.IMAGE_ARCHIVE


def read_user_data(
    path: Path, limits: ArchiveLimits | None = None, fmt: DataFormat | None = None
) -> tuple[UserArrays, DataFormat]:
    """The checked arrays of the data set at `path` and its format; `DataProblem` if unusable."""
    if not path.exists():
        raise DataProblem(f"{path} does not exist")
    fmt = fmt or detect_format(path)
    if fmt == DataFormat.NPZ:
        return read_npz(path, limits), fmt
    return read_image_folder(path, limits), fmt


def inspect_user_data(path: Path, limits: ArchiveLimits | None = None) -> DataSummary:
    """Shape, class count and sizes of the data set at `path` (read and checked in full)."""
    arrays, fmt = read_user_data(path, limits)
    return summarize(arrays, fmt)


def resolve_local_data(raw: Any, base_dir: Path | None = None) -> Any:
    """`raw` with its `data` section filled from the data at `data.path` when it names `npz` or
    `folder` (relative paths from `base_dir`); anything else comes back unchanged. Raises
    `DataProblem` when the data cannot be used."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        return raw
    data = raw["data"]
    if data.get("name") not in ("npz", "folder") or not isinstance(data.get("path"), str):
        return raw
    path = Path(data["path"]).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    summary = inspect_user_data(path)
    if data["name"] == "npz" and summary.format != DataFormat.NPZ:
        raise DataProblem(f"data.path {path} is not a .npz file (use data.name folder)")
    if data["name"] == "folder" and summary.format == DataFormat.NPZ:
        raise DataProblem(f"data.path {path} is a .npz file (use data.name npz)")
    return {**raw, "data": {**data, "path": str(path.resolve()), **summary.spec_fields()}}
