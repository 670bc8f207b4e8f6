"""The documentation: the site builds with `mkdocs build --strict`, every `mnistgen ...` command
written in README.md and docs/*.md is one the CLI's own parser accepts (and a few cheap ones run),
the README stays short, and no page tells development history."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mnistgen.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MOST_LINES = 150

FENCED = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`(mnistgen(?: [^`]*)?)`")

# Commands written with a placeholder where the command's name goes, which no parser can accept.
# Each is there to show the form of every command at once; keep this list short.
PLACEHOLDERS = {
    "mnistgen COMMAND --help",
    "mnistgen --debug COMMAND ...",
}


def bash_lines(text: str) -> list[str]:
    """The lines of the text's ```bash blocks, continuation lines joined."""
    lines = []
    for language, body in FENCED.findall(text):
        if language == "bash":
            lines += body.replace("\\\n", " ").splitlines()
    return lines


def mnistgen_argv(line: str) -> list[str] | None:
    """The arguments after `mnistgen` (or `python -m mnistgen`, `torchrun ... -m mnistgen`) in a
    shell line, comments stripped; None when the line runs something else."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if Path(word).name == "mnistgen" and (i == 0 or words[i - 1] == "-m"):
            return words[i + 1:]
    return None


def written_commands() -> list[tuple[str, str, list[str]]]:
    """(page, the command as written, its argv) for every mnistgen command in the pages: in ```bash
    blocks, and in inline code outside fenced blocks."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for line in bash_lines(text):
            argv = mnistgen_argv(line)
            if argv is not None:
                found.append((page.name, line.strip(), argv))
        for span in INLINE.findall(FENCED.sub("", text)):
            if span not in PLACEHOLDERS:
                found.append((page.name, span, shlex.split(span)[1:]))
    return found


def parse_error(argv: list[str]) -> str | None:
    """What the CLI's parser says against ``argv`` (its stderr), or None when it accepts it."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return None if exc.code in (0, None) else stderr.getvalue().strip() or f"exit {exc.code}"
    return None


def is_command_name(argv: list[str]) -> bool:
    """A bare `mnistgen train` in prose names a command rather than runs one: it only has to exist."""
    return len(argv) == 1 and not argv[0].startswith("-") and parse_error([argv[0], "--help"]) is None


def run_mnistgen(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistgen", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


# --------------------------------------------------------------------------- the site


def test_the_site_builds_strictly(tmp_path):
    try:
        importlib.import_module("mnistgen.api")
    except ImportError as exc:
        pytest.skip(f"docs/api.md documents mnistgen.api, which does not import here yet: {exc}")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    api_page = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("load", "score", "train", "FlowModel"):
        assert f'id="mnistgen.api.{name}"' in api_page or f'id="mnistgen.models.base.{name}"' in api_page, name
    assert ":class:`" not in api_page  # reStructuredText roles became code spans


# --------------------------------------------------------------------------- the commands


def test_the_pages_hold_commands_to_check():
    pages = {page for page, _, _ in written_commands()}
    assert {"README.md", "cli.md", "python.md", "models.md", "scaling.md"} <= pages


def test_every_written_command_parses():
    refused = [f"{page}: {written}\n    {error}" for page, written, argv in written_commands()
               if not is_command_name(argv) and (error := parse_error(argv)) is not None]
    assert not refused, "commands the CLI refuses:\n" + "\n".join(refused)


def test_a_wrong_option_in_a_page_would_be_caught():
    assert parse_error(["sample", "flow", "--pretrained", "--out", "x.png", "--colour", "red"]) is not None
    assert parse_error(["train", "gan", "--minuts", "5"]) is not None
    assert parse_error(["sample", "flow", "--pretrained"]) is not None  # --out is required
    assert not is_command_name(["trian"])
    assert is_command_name(["reproduce"])


def test_mnistgen_argv_reads_shell_lines():
    assert mnistgen_argv("mnistgen train gan --minutes 5   # -> runs/gan-TIMESTAMP/") == ["train", "gan", "--minutes", "5"]
    assert mnistgen_argv("torchrun --standalone --nproc-per-node 4 -m mnistgen train flow") == ["train", "flow"]
    assert mnistgen_argv(".venv/bin/mnistgen presets") == ["presets"]
    assert mnistgen_argv("make test    # mnistgen report --quick") is None
    assert mnistgen_argv("pip install mnistgen") is None


def test_cheap_commands_run_as_written(tmp_path):
    for argv in (["--help"], ["presets"]):
        done = run_mnistgen(argv, tmp_path)
        assert done.returncode == 0, done.stderr
    assert "flow" in done.stdout and "gan-seed004" in done.stdout


def test_the_readme_starts_with_a_picture(tmp_path):
    first = next(argv for line in bash_lines(README.read_text()) if (argv := mnistgen_argv(line)) is not None)
    out = Path(first[first.index("--out") + 1])
    assert first[0] == "sample" and out.suffix == ".png", first
    done = run_mnistgen(first, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / out).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# --------------------------------------------------------------------------- the README and the pages


def test_the_readme_is_short_and_keeps_the_two_fresh_clone_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MOST_LINES
    make_lines = [line.split("#")[0].strip() for line in bash_lines(text) if line.startswith("make")]
    assert make_lines == ["make quick", "make test"]
    assert set(re.findall(r"\bmake (\w+)", text)) == {"quick", "test"}


def test_the_readme_picture_and_every_linked_page_exist():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).is_file(), target
    assert "docs/digits.png" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_tells_development_history(page):
    text = page.read_text()
    for pattern in (r"\bissues? \d+", r"\bsession", r"\bcommit [0-9a-f]{7}", r"shared/seeds", r"other jobs"):
        assert not re.search(pattern, text, re.IGNORECASE), f"{page.name}: {pattern}"
