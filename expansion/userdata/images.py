"""Image folders (torchvision's `ImageFolder` layout, one folder per class) as numpy arrays.

The layout: `train/<class>/<image>`, `test/<class>/<image>` and optionally `val/<class>/<image>`,
either in a folder or packed as a `.tar` (optionally compressed) or `.zip`, possibly under one
top folder. Class indices follow the sorted training class names. Every image decodes with
Pillow and all have one size; all grayscale gives 1 channel, anything else 3 (RGB).

An archive's members are checked before anything is decoded: a member that would land outside
the target folder (`../`, an absolute path), a link or special file, too many members or too
many unpacked bytes refuse the whole archive. Nothing is ever extracted to disk.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np

from expansion.userdata.arrays import (
    ArchiveLimits,
    DataProblem,
    FloatArray,
    LabelArray,
    UserArrays,
    check_arrays,
)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

Member = tuple[str, Callable[[], bytes]]
"""An archive member's path and a function reading its bytes."""


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a member name; refuses names that escape the target folder."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataProblem(f"archive member {name!r} has an absolute path")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise DataProblem(f"archive member {name!r} escapes the archive's folder (..)")
    return tuple(p for p in parts if p not in ("", "."))


@contextmanager
def _tar_members(path: Path, limits: ArchiveLimits) -> Iterator[list[Member]]:
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise DataProblem(f"not a readable tar archive: {exc}") from None
    with archive:
        count = unpacked = 0
        infos = []
        try:
            for info in archive:  # headers only: sizes are checked before any content is read
                _safe_parts(info.name)
                if not (info.isfile() or info.isdir()):
                    raise DataProblem(
                        f"archive member {info.name!r} is a link or special file; only files "
                        "and folders are accepted"
                    )
                count += 1
                unpacked += info.size
                if count > limits.max_members:
                    raise DataProblem(f"archive holds over {limits.max_members} members")
                if unpacked > limits.max_unpacked_bytes:
                    raise DataProblem(
                        f"archive unpacks to over {limits.max_unpacked_bytes} bytes (the limit)"
                    )
                if info.isfile():
                    infos.append(info)
        except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise DataProblem(f"corrupt tar archive: {exc}") from None

        def reader(info: tarfile.TarInfo) -> Callable[[], bytes]:
            def read() -> bytes:
                try:
                    handle = archive.extractfile(info)
                    if handle is None:  # pragma: no cover - regular files have contents
                        raise DataProblem(f"cannot read archive member {info.name!r}")
                    return handle.read(info.size + 1)
                except (tarfile.TarError, EOFError, OSError) as exc:
                    raise DataProblem(f"corrupt archive member {info.name!r}: {exc}") from None

            return read

        yield [(info.name, reader(info)) for info in infos]


@contextmanager
def _zip_members(path: Path, limits: ArchiveLimits) -> Iterator[list[Member]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataProblem(f"not a readable zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise DataProblem(f"archive holds {len(infos)} members, over {limits.max_members}")
        unpacked = 0
        for info in infos:
            _safe_parts(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 where the writer set no type
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DataProblem(
                    f"archive member {info.filename!r} is a link or special file; only files "
                    "and folders are accepted"
                )
            unpacked += info.file_size
        if unpacked > limits.max_unpacked_bytes:
            raise DataProblem(
                f"archive unpacks to {unpacked} bytes, over the limit of "
                f"{limits.max_unpacked_bytes}"
            )

        def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
            def read() -> bytes:
                # Never trust the declared size: read at most that much (plus one byte to see
                # a lie) from the decompressor.
                try:
                    with archive.open(info) as handle:
                        data = handle.read(info.file_size + 1)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise DataProblem(f"corrupt archive member {info.filename!r}: {exc}") from None
                if len(data) > info.file_size:
                    raise DataProblem(f"archive member {info.filename!r} is larger than declared")
                return data

            return read

        yield [(info.filename, reader(info)) for info in infos if not info.is_dir()]


@contextmanager
def _folder_members(root: Path) -> Iterator[list[Member]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    yield [(file.relative_to(root).as_posix(), file.read_bytes) for file in files]


@contextmanager
def archive_members(path: Path, limits: ArchiveLimits) -> Iterator[list[Member]]:
    """The members of a `.tar`/`.tar.gz`/`.zip` image archive, checked, or of a folder; open
    (readable) while the context lasts."""
    if path.is_dir():
        opened = _folder_members(path)
    elif zipfile.is_zipfile(path):
        opened = _zip_members(path, limits)
    elif tarfile.is_tarfile(path):
        opened = _tar_members(path, limits)
    else:
        raise DataProblem("not a .npz, .tar or .zip file")
    with opened as members:
        yield members


def _decode(name: str, data: bytes, limits: ArchiveLimits) -> tuple[np.ndarray, bool]:
    """(H, W, 3) or (H, W) uint8 pixels of one image, and whether it is grayscale."""
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise DataProblem(
                    f"image {name!r} has {width}x{height} pixels, over the limit of "
                    f"{limits.max_image_pixels}"
                )
            gray = image.mode in ("L", "1", "I;16", "I", "F")
            pixels = np.asarray(image.convert("L" if gray else "RGB"))
    except DataProblem:
        raise
    except DecompressionBombError:
        raise DataProblem(
            f"image {name!r} is over the limit of {limits.max_image_pixels} pixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataProblem(f"image {name!r} does not decode: {exc}") from None
    return pixels, gray


def read_image_folder(path: Path, limits: ArchiveLimits | None = None) -> UserArrays:
    """The arrays of an image folder (a folder, or a `.tar`/`.zip` of one), checked."""
    limits = limits or ArchiveLimits()
    with archive_members(path, limits) as members:
        return _read_members(members, limits)


def _read_members(members: list[Member], limits: ArchiveLimits) -> UserArrays:
    entries: list[tuple[tuple[str, ...], Callable[[], bytes]]] = []
    for name, read in members:
        parts = _safe_parts(name)
        if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue  # hidden files and macOS resource forks
        entries.append((parts, read))
    tops = {parts[0] for parts, _ in entries}
    if len(tops) == 1 and not tops & set(SPLITS):  # one wrapping folder
        entries = [(parts[1:], read) for parts, read in entries if len(parts) > 1]
    images: dict[str, list[tuple[str, str, Callable[[], bytes]]]] = {s: [] for s in SPLITS}
    for parts, read in entries:
        shown = "/".join(parts)
        if len(parts) != 3 or parts[0] not in SPLITS:
            raise DataProblem(
                f"{shown!r} is not in the ImageFolder layout: expected "
                "train/<class>/<image>, test/<class>/<image> (val/<class>/<image> optional)"
            )
        if not parts[2].lower().endswith(IMAGE_SUFFIXES):
            raise DataProblem(f"{shown!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        images[parts[0]].append((parts[1], shown, read))
    if not images["train"] or not images["test"]:
        raise DataProblem("an image folder needs images under both train/ and test/")
    class_names = sorted({c for c, _, _ in images["train"]})
    index = {c: i for i, c in enumerate(class_names)}
    decoded: dict[str, list[tuple[np.ndarray, bool, int]]] = {s: [] for s in SPLITS}
    size: tuple[int, int] | None = None
    for split in SPLITS:
        for cls, shown, read in sorted(images[split], key=lambda e: e[1]):
            if cls not in index:
                raise DataProblem(f"{shown!r}: class {cls!r} has no training images")
            pixels, gray = _decode(shown, read(), limits)
            if size is None:
                size = pixels.shape[:2]
            elif pixels.shape[:2] != size:
                raise DataProblem(
                    f"image {shown!r} is {pixels.shape[1]}x{pixels.shape[0]}, the others "
                    f"{size[1]}x{size[0]}: every image needs the same size"
                )
            decoded[split].append((pixels, gray, index[cls]))
    all_gray = all(g for split in SPLITS for _, g, _ in decoded[split])
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if not decoded[split]:
            continue
        arrays[f"x_{split}"] = _stack([p for p, _, _ in decoded[split]], all_gray)
        arrays[f"y_{split}"] = np.array([c for _, _, c in decoded[split]], dtype=np.int64)
    return check_arrays(arrays, len(class_names))


def _stack(pixels: list[np.ndarray], all_gray: bool) -> FloatArray:
    """(N, C, H, W) float32 in [0, 1] from decoded images."""
    out: list[np.ndarray] = []
    for p in pixels:
        if all_gray:
            out.append(p[None, :, :])
        else:
            rgb = np.repeat(p[:, :, None], 3, axis=2) if p.ndim == 2 else p
            out.append(rgb.transpose(2, 0, 1))
    stacked: FloatArray = np.stack(out).astype(np.float32) / np.float32(255.0)
    return stacked


__all__ = ["LabelArray", "archive_members", "read_image_folder"]
