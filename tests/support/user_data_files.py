"""Small generated data sets in every accepted form (a `.npz`, an image folder, its `.tar`
and `.zip`), and hostile ones, for the upload and user-data tests."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_npz(path: Path, n_train: int = 96, n_test: int = 32, **override: Any) -> Path:
    """A learnable 3-class `.npz` of 12 features (class = sign pattern of two features)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 12)).astype(np.float32)
        x[:, 0] += 2.0 * y
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def png_bytes(color: tuple[int, int, int], size: int = 8, mode: str = "RGB") -> bytes:
    """A PNG of one color with a little noise."""
    rng = np.random.default_rng(sum(color))
    pixels = np.clip(np.array(color) + rng.integers(-20, 20, (size, size, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB").convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def image_members(per_class: int = 12, test_per_class: int = 4) -> dict[str, bytes]:
    """ImageFolder members (`train/<class>/<i>.png`, `test/...`) under a top folder."""
    members = {}
    for name, color in COLORS.items():
        for i in range(per_class):
            members[f"shapes/train/{name}/{i}.png"] = png_bytes(color)
        for i in range(test_per_class):
            members[f"shapes/test/{name}/{i}.png"] = png_bytes(color)
    return members


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A gzip'd tar of `members`."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A deflated zip of `members`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_folder(root: Path, members: dict[str, bytes]) -> Path:
    """The members as files under `root`; returns the top folder."""
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "shapes"


def write_tar_with_link(path: Path) -> Path:
    """An image archive holding a symbolic link to /etc/passwd."""
    with tarfile.open(path, "w") as archive:
        for name, data in image_members(2, 1).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("shapes/train/red/link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return path
