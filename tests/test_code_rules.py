"""Rules of the code base that no linter checks: every `type: ignore` names its error code and
says why (a comment on the line or the line above)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[\w, -]+\])?")


def test_every_type_ignore_names_its_code_and_reason() -> None:
    problems = []
    for top in ("app", "expansion", "tests", "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, 1):
                match = IGNORE.search(line)
                if match is None:
                    continue
                where = f"{path.relative_to(ROOT)}:{number}"
                if not match.group("code"):
                    problems.append(f"{where}: no error code")
                before = lines[number - 2].strip() if number > 1 else ""
                after = line[match.end() :].strip()
                if not (after.startswith("#") or before.startswith("#")):
                    problems.append(f"{where}: no reason in a comment")
    assert not problems, "\n".join(problems)


def test_the_design_lives_in_the_repository() -> None:
    """Code, tests and docs cite `docs/design.md`, never a design file outside the clone."""
    outside = re.compile(r"DESIGN\.md|\.\./shared|shared/DESIGN")
    problems = []
    for top in ("app", "expansion", "tests", "docs", "benchmarks", "migrations", "examples"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix not in {".py", ".md", ".html", ".yaml", ".js"}:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if outside.search(line) and path.name != "test_code_rules.py":
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not problems, "\n".join(problems)
    assert (ROOT / "docs" / "design.md").is_file()
