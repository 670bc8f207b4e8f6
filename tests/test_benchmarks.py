"""The benchmark scripts are run by hand, rarely, so nothing else notices when a change to the package
breaks one of them (a name it imports moved, say): each must at least import and offer ``main``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.stem)
def test_the_script_imports_and_has_a_main_and_its_command(path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a script's work runs under `if __name__ == "__main__"` only
    assert callable(getattr(module, "main", None)), "no main()"
    assert f"benchmarks/{path.name}" in (module.__doc__ or ""), "its docstring gives no command to run it"
