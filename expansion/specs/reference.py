"""The spec reference (`docs/specs.md`), generated from the spec models themselves.

    python -m expansion.specs.reference > docs/specs.md

Every field of every section with its full dotted path, type, default, bounds and the
attribute docstring that describes it. A test regenerates the text and compares it with the
file, so the reference cannot drift from the models.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from expansion.specs.experiments import ExpandExperiment, GrowExperiment, TrainExperiment
from expansion.specs.sections import DataSpec, ExpandSpec, GrowSpec, ModelSpec, TrainSpec

SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("data", DataSpec),
    ("model", ModelSpec),
    ("train", TrainSpec),
    ("expand", ExpandSpec),
    ("grow", GrowSpec),
)
KINDS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("train", TrainExperiment),
    ("expand", ExpandExperiment),
    ("grow", GrowExperiment),
)

HEADER = """\
# Experiment spec reference

Generated from the spec models (`expansion/specs.py`) by
`python -m expansion.specs.reference > docs/specs.md`; do not edit by hand
(`tests/expansion/specs/test_spec_reference.py` fails when this file is stale).

A spec is a YAML or JSON mapping with a `kind` and the sections below; every key is optional
unless marked *required*, unknown keys are errors, and `jumpboard validate SPEC` lists every
problem with its dotted path. The same models validate `POST /api/v1/jobs` bodies; `/docs`
shows them too.
"""


def type_name(annotation: Any) -> str:
    """A short, readable name of a field's type: `int`, `float | None`, `"a" | "b"`."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return type_name(get_args(annotation)[0])
    if origin is Literal:
        return " | ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return f"list of {type_name(item)}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"section `{annotation.__name__}`"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "*required*"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]  # no-argument factories
        except TypeError:
            return "computed"
        if isinstance(value, BaseModel):
            return "all defaults"
        return f"`{value!r}`" if value != [] else "`[]`"
    if info.default is PydanticUndefined:
        return ""
    return "`null`" if info.default is None else f"`{info.default!r}`"


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _bounds(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for attribute, symbol in _BOUNDS:
            value = getattr(meta, attribute, None)
            if value is not None:
                parts.append(
                    f"{symbol} {value:,}" if isinstance(value, int) else f"{symbol} {value}"
                )
        for attribute, label in (("min_length", "min length"), ("max_length", "max length")):
            value = getattr(meta, attribute, None)
            if value is not None:
                parts.append(f"{label} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"pattern `{pattern}`")
    # Bounds on list items live in the item type's Annotated metadata.
    for arg in get_args(info.annotation):
        if get_origin(arg) is typing.Annotated:
            for meta in get_args(arg)[1:]:
                for attribute, symbol in _BOUNDS:
                    value = getattr(meta, attribute, None)
                    if value is not None:
                        parts.append(f"each {symbol} {value:,}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def field_rows(prefix: str, model: type[BaseModel]) -> list[str]:
    """Markdown table rows, one per field of `model`, paths starting with `prefix`."""
    rows = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        rows.append(
            f"| `{path}` | {_cell(type_name(info.annotation))} | {_default(info)} | "
            f"{_cell(_bounds(info))} | {_cell(info.description or '')} |"
        )
    return rows


def _table(rows: list[str]) -> list[str]:
    return [
        "| field | type | default | bounds | meaning |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]


def render() -> str:
    """The whole reference as Markdown."""
    lines = [HEADER, "## Kinds", ""]
    for kind, model in KINDS:
        sections = [
            name for name, info in model.model_fields.items() if _is_section(info.annotation)
        ]
        lines.append(
            f"- `kind: {kind}`: {_cell(model.__doc__ or '')} Sections: "
            + ", ".join(f"`{s}`" for s in sections)
            + "."
        )
    lines += ["", "## Top level", ""]
    top = [
        row
        for row in field_rows("", GrowExperiment)
        if not any(row.startswith(f"| `{name}`") for name, _ in (*SECTIONS, ("kind", None)))
    ]
    kinds = " \\| ".join(f"`{kind}`" for kind, _ in KINDS)
    top.append(f"| `kind` | {kinds} | `'train'` |  | Which experiment (see Kinds above). |")
    lines += _table(top)
    for name, model in SECTIONS:
        lines += ["", f"## `{name}`: {model.__name__}", "", _cell(model.__doc__ or ""), ""]
        lines += _table(field_rows(name, model))
    return "\n".join(lines) + "\n"


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def main() -> int:
    """Print the reference to standard output."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
