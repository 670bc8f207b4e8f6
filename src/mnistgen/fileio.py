"""Atomic file writing: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Flags for a fresh temp file that no other process can have opened. O_BINARY exists on Windows only.
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp_beside(path: Path) -> tuple[int, Path]:
    """Create ``PATH<random>.tmp`` next to ``path`` with the mode a plain ``open()`` would give.

    ``tempfile.mkstemp`` always makes mode 0600 files. Asking the kernel for 0666 instead lets it
    apply the process's umask (and any default ACL of the folder) itself, at creation, the way
    ``open()`` does, with no need to read the umask (``os.umask`` reads it only by changing it).
    """
    tmp = path.with_name(f"{path.name}{secrets.token_hex(8)}.tmp")
    return os.open(tmp, _CREATE_NEW, 0o666), tmp


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync it, then rename it into place.

    A crash or kill at any moment leaves either the previous file or the complete new one.
    The new file gets the mode ``open()`` gives under the current umask (0644 under umask 022).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` for text (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
