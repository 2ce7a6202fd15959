"""Bounded parsing of untrusted YAML and JSON: size, nesting depth, and no YAML aliases.

Every place that turns text from outside into a spec (the API body, the web form, the CLI's
spec files) goes through here, so that a hostile document costs at most a bounded parse:
no alias bomb (aliases are refused outright: a spec never needs one), no RecursionError from
deep nesting, no unbounded read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_SPEC_BYTES = 1 << 20
"""Largest spec document accepted anywhere (1 MiB)."""
MAX_NESTING = 32
"""Deepest nesting of mappings/lists accepted in a spec (a real spec nests 3 levels)."""


class InputError(ValueError):
    """Text that cannot become a spec mapping; the message is one line naming the problem."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and nesting deeper than MAX_NESTING."""

    _nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, refusing an alias or a node nested too deep."""
        if self.check_event(yaml.AliasEvent):
            # types-PyYAML leaves the parser's peek_event unannotated.
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(
                None, None, "aliases (*name) are not allowed in a spec", event.start_mark
            )
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                # types-PyYAML leaves the parser's peek_event unannotated.
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1


def nesting_depth_problem(value: Any, limit: int = MAX_NESTING) -> str | None:
    """Why `value` (parsed JSON) nests too deep, or None; iterative, so it never recurses."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return f"nested deeper than {limit} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def _check_size(text: str | bytes) -> None:
    size = len(text.encode("utf-8")) if isinstance(text, str) else len(text)
    if size > MAX_SPEC_BYTES:
        raise InputError(f"larger than the limit of {MAX_SPEC_BYTES} bytes")


def load_json_text(text: str | bytes) -> Any:
    """The JSON value in `text`, bounded in size and nesting; InputError otherwise."""
    _check_size(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"not valid JSON (nested deeper than {MAX_NESTING} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc.__class__.__name__})") from None
    problem = nesting_depth_problem(value)
    if problem:
        raise InputError(f"not accepted JSON ({problem})")
    return value


def load_yaml_text(text: str | bytes) -> Any:
    """The YAML value in `text`, bounded in size and nesting, without aliases; else InputError."""
    _check_size(text)
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or "could not be parsed"
        raise InputError(f"not valid YAML ({where}{reason})") from None
    except RecursionError:
        raise InputError(f"not valid YAML (nested deeper than {MAX_NESTING} levels)") from None


def load_spec_mapping(text: str | bytes, *, json_only: bool = False) -> dict[str, Any]:
    """The mapping written in `text`: JSON when it starts with `{` (or `json_only`), else YAML."""
    if isinstance(text, bytes):
        _check_size(text)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text") from None
    if not text.strip():
        raise InputError("empty; write a spec in YAML or JSON")
    if json_only or text.lstrip().startswith("{"):
        value = load_json_text(text)
    else:
        value = load_yaml_text(text)
    if not isinstance(value, dict):
        raise InputError(f"must be a mapping of fields, not {type(value).__name__}")
    return value


def read_bounded(path: Path, limit: int = MAX_SPEC_BYTES) -> bytes:
    """At most `limit` bytes of the file at `path`; InputError when it holds more.

    Reads in chunks and stops one byte past the limit, so a device (`/dev/zero`), a pipe or
    a huge file costs at most `limit` bytes whatever `stat` says about its size.
    """
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"larger than the limit of {limit} bytes")
    return data
