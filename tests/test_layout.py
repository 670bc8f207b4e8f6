"""The layout table of docs/contributing.md names every module of src/mnistgen, and only what exists,
so that a reader who looks something up there finds it where the table says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mnistgen"
GUIDE = ROOT / "docs" / "contributing.md"
HEADING = "## Layout of `src/mnistgen`"


def named_paths() -> set[str]:
    """The files and folders (ending in /) that the table's "where" column names."""
    section = GUIDE.read_text().split(HEADING, 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and line.startswith("|") and not set(cells[1]) <= {"-"}:
            names.update(n for n in re.findall(r"`([^`]+)`", cells[1]) if "." in n or n.endswith("/"))
    return names


def modules() -> list[str]:
    """Every Python module under src/mnistgen, as a path relative to it."""
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_table_is_found_and_names_files():
    assert {"cli.py", "models/", "training/loop.py"} <= named_paths()


def test_every_module_is_in_the_layout_table():
    named = named_paths()

    def listed(module: str) -> bool:
        # A module is named itself, or by a folder above it (`models/`: one file per model).
        folders = [module.rsplit("/", i)[0] + "/" for i in range(1, module.count("/") + 1)]
        return module in named or any(f in named for f in folders)

    assert [m for m in modules() if not listed(m)] == []


def test_the_layout_table_names_only_what_exists():
    assert [n for n in sorted(named_paths()) if not (PACKAGE / n).exists()] == []
