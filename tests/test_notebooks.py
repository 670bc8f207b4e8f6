"""The example notebooks in examples/: each runs top to bottom at a tiny scale, in a fresh folder and
in a kernel of the interpreter that runs the tests (the project's venv), and fails on any error; a bad
MNISTGEN_EXAMPLE_SCALE is refused by name; the committed copies carry the outputs of one full-size
run, figures included, and nothing of the machine they ran on."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXPECTED = ["01-quickstart.ipynb", "02-train-and-compare.ipynb", "03-latent-space-study.ipynb"]
TINY_SCALE = "0.004"  # subsets of 256 images, an epoch or three, a few dozen samples
CELL_TIMEOUT = 600  # seconds: generous, for a machine shared with other work
MOST_BYTES = 1_000_000  # a few PNGs, no huge tables
# Written by the last cell the test appends: which interpreter the kernel is.
WHO_RUNS = "import sys\nprint(sys.executable)\nprint(sys.prefix)"


def notebook_id(path: Path) -> str:
    return path.stem


def venv_kernel(folder: Path) -> KernelManager:
    """A kernel manager for "python3" that starts this very interpreter, whatever kernels Jupyter
    knows elsewhere (a python3 spec in the user's folders could name another Python)."""
    kernels = folder / "kernels"
    write_kernel_spec(kernels / "python3")  # argv: sys.executable -m ipykernel_launcher ...
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def execute(nb: nbformat.NotebookNode, workdir: Path, scratch: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom with ``workdir`` as its current folder; a failing cell raises
    CellExecutionError (errors are never allowed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, km=venv_kernel(scratch), timeout=CELL_TIMEOUT, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def printed(cell: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


# --------------------------------------------------------------------------- running them


def test_the_three_examples_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_the_notebook_runs_top_to_bottom_at_a_tiny_scale(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTGEN_EXAMPLE_SCALE", TINY_SCALE)  # the kernel inherits it, and the data cache
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHO_RUNS))
    workdir = tmp_path / "work"
    execute(nb, workdir, tmp_path)

    assert printed(code_cells(nb)[0]).startswith(f"MNISTGEN_EXAMPLE_SCALE={TINY_SCALE}")
    executable, prefix = printed(nb.cells[-1]).split()
    assert (executable, prefix) == (sys.executable, sys.prefix)  # the venv's own python, not some other kernel
    trains = "mnistgen.train(" in "".join(cell.source for cell in code_cells(nb))
    written = sorted(p.name for p in workdir.iterdir())
    assert written == (["runs"] if trains else []), written  # runs go to a relative runs/ folder, nothing else
    if trains:
        assert all((run / "config.yaml").is_file() and (run / "summary.json").is_file()
                   for run in (workdir / "runs").iterdir())


def test_a_failing_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("raise RuntimeError('the third digit is missing')"),
                                         nbformat.v4.new_code_cell("never = True")])
    with pytest.raises(CellExecutionError, match="the third digit is missing"):
        execute(nb, tmp_path / "work", tmp_path)
    assert "outputs" not in nb.cells[2] or not nb.cells[2].outputs  # it stopped at the error


def test_the_kernel_is_this_interpreter_whatever_kernels_jupyter_knows(tmp_path, monkeypatch):
    elsewhere = tmp_path / "jupyter" / "kernels" / "python3"
    elsewhere.mkdir(parents=True)
    (elsewhere / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher",
                                                                "-f", "{connection_file}"],
                                                       "display_name": "another Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))  # searched before the venv's own kernels
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WHO_RUNS)])
    execute(nb, tmp_path / "work", tmp_path)
    assert printed(nb.cells[0]).split() == [sys.executable, sys.prefix]


@pytest.mark.parametrize("path, value", [*[(p, "abc") for p in NOTEBOOKS], (NOTEBOOKS[0], "0"), (NOTEBOOKS[0], "nan")],
                         ids=lambda x: notebook_id(x) if isinstance(x, Path) else repr(x))
def test_a_bad_scale_is_refused_by_name(path, value, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTGEN_EXAMPLE_SCALE", value)
    nb = nbformat.read(path, as_version=4)
    with pytest.raises(CellExecutionError) as refused:
        execute(nb, tmp_path / "work", tmp_path)
    said = str(refused.value)
    assert f"MNISTGEN_EXAMPLE_SCALE must be a number in (0, 1], not {value!r}" in said, said[-2000:]
    assert not (tmp_path / "work" / "runs").exists()  # refused before anything trained


# --------------------------------------------------------------------------- the committed copies


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_the_committed_copy_holds_one_full_size_run(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # one run, top to bottom
    assert printed(cells[0]).startswith("MNISTGEN_EXAMPLE_SCALE=1\n")
    assert "This notebook ran in" in printed(cells[-1])
    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert not [out for out in outputs if out.output_type == "stream" and out.name == "stderr"]  # no progress bars
    assert sum("image/png" in out.get("data", {}) for out in outputs) >= 2  # figures show when browsing
    assert path.stat().st_size < MOST_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_the_committed_copy_tells_nothing_of_the_machine(path):
    text = path.read_text()
    for leak in (str(Path.home()), str(ROOT), "/tmp/", "site-packages"):
        assert leak not in text, leak
    intro = nbformat.read(path, as_version=4).cells[0]
    assert intro.cell_type == "markdown" and re.search(r"\d+ minutes? on ", intro.source), intro.source


def test_the_docs_page_names_every_notebook():
    page = (ROOT / "docs" / "examples.md").read_text()
    for path in NOTEBOOKS:
        assert f"examples/{path.name}" in page, path.name
    assert "examples.md" in (ROOT / "mkdocs.yml").read_text()
