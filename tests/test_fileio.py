import os
import stat

import pytest

from mnistgen.fileio import atomic_write, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and put the previous one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_gives_under_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert mode(atomic_write_text(tmp_path / "new.txt", "hello")) == expected
    with open(tmp_path / "plain.txt", "w") as fh:  # what an ordinary open() gives, for comparison
        fh.write("hello")
    assert mode(tmp_path / "plain.txt") == expected


def test_rewrite_replaces_content_and_leaves_no_temp_file(tmp_path, umask):
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def fail(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unwritable_folder_is_an_os_error_and_leaves_nothing(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        tmp_path.chmod(0o755)
    assert list(tmp_path.iterdir()) == []
