"""docs/compliance.md has a row per article and names only tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "compliance.md"


def _rows() -> dict[int, str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*Art\.\s*(\d+)\s*\|", line)
        if m:
            rows[int(m.group(1))] = line
    return rows


def test_every_article_has_a_row() -> None:
    assert sorted(_rows()) == list(range(1, 30))


def test_every_listed_test_exists() -> None:
    missing = []
    for line in _rows().values():
        for node in re.findall(r"`(tests/[^`]+?::[^`]+)`", line):
            path, _, name = node.partition("::")
            file = ROOT / path
            if not file.exists():
                missing.append(node)
                continue
            tree = ast.parse(file.read_text(encoding="utf-8"))
            kinds = ast.FunctionDef | ast.ClassDef
            names = {n.name for n in ast.walk(tree) if isinstance(n, kinds)}
            if name.split("::")[-1].split("[")[0] not in names:
                missing.append(node)
    assert not missing, missing
