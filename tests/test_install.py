"""How mnistgen installs: ranges for users, exact pins for the development set-up, a user's torch kept."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (Requirement(line) for line in project["dependencies"])
    return {canonicalize_name(r.name): r for r in requirements}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("installed", ["2.2.0", "2.5.1+cu121", "2.5.1+cpu", "2.13.0", "2.13.0+cu128", "3.1.0"])
def test_any_torch_from_2_2_satisfies_the_package(installed):
    """pip keeps a torch that meets the requirement, so Colab's CUDA torch is never replaced."""
    torch = dependencies()["torch"]
    assert torch.url is None
    assert torch.specifier.contains(installed), f"{torch} would make pip replace torch {installed}"


def test_the_package_pins_nothing_exactly():
    for requirement in dependencies().values():
        operators = {spec.operator for spec in requirement.specifier}
        assert not operators & {"==", "===", "~="}, f"{requirement}: exact pins belong in constraints.txt"
        assert requirement.url is None, f"{requirement}: a URL would force one build"


def test_development_pins_are_exact_and_inside_the_package_ranges():
    pins, ranges = constraint_pins(), dependencies()
    assert pins["torch"] == "2.13.0"
    for name, requirement in ranges.items():
        assert name in pins, f"{name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"constraints.txt pins {name} outside {requirement}"


# ------------------------------------------------------------------------------ the Makefile

FAKE_PYTHON = """#!/bin/sh
# Stands in for the venv's python: 'import torch' works when FAKE_TORCH=1, anything else is logged.
case "$*" in *"import torch"*) [ "$FAKE_TORCH" = 1 ]; exit $? ;; esac
echo "$*" >> "$(dirname "$0")/../calls.log"
"""

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def fake_venv(folder: Path) -> Path:
    python = folder / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return folder


def make(*args: str, **env: str) -> str:
    # Under `make test` the outer make's flags and variables (SYSTEM_SITE_PACKAGES=1 ...) would
    # reach this make through the environment: each test gives its own.
    outer = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SYSTEM_SITE_PACKAGES", "VENV"}
    clean = {k: v for k, v in os.environ.items() if k not in outer}
    done = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", *args], capture_output=True,
                          text=True, timeout=60, env={**clean, **env}, check=True)
    return done.stdout


@needs_make
@pytest.mark.parametrize("has_torch", [True, False])
def test_setup_keeps_a_torch_the_venv_already_has(tmp_path, has_torch):
    venv = fake_venv(tmp_path / "venv")
    make("setup", f"VENV={venv}", FAKE_TORCH="1" if has_torch else "0")
    pins = (venv / "constraints.txt").read_text()
    assert ("torch==2.13.0" in pins.splitlines()) is not has_torch
    assert "numpy==" in pins and "torchmetrics==" in pins  # every other pin still applies
    calls = (venv / "calls.log").read_text()
    assert f"-m pip install -q -c {venv}/constraints.txt -e .[dev]" in calls
    assert (venv / ".installed").exists()


@needs_make
def test_system_site_packages_is_asked_for_not_the_default(tmp_path):
    venv = tmp_path / "new"
    assert f"python3 -m venv  {venv}" in make("-n", "setup", f"VENV={venv}")
    assert f"python3 -m venv --system-site-packages {venv}" in make("-n", "setup", f"VENV={venv}",
                                                                   "SYSTEM_SITE_PACKAGES=1")
