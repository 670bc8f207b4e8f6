"""A run folder belongs to one process: an OS lock on ``DIR/.lock`` held for the whole training.

``flock`` on a file opened with O_CREAT is atomic (no check-then-create race) and the kernel
drops it when the holder dies, so a run killed with SIGKILL never blocks its own ``--resume``.
The file holds the holder's PID, only to name it in the error.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from .errors import MnistgenError

LOCK_NAME = ".lock"


class RunFolderLock:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self) -> RunFolderLock:
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise MnistgenError(f"{self.folder} is in use by process {holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (harmless, reused next time)
            self.fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def holds_files(folder: Path) -> bool:
    """True when ``folder`` holds anything but our lock file, temp files of an atomic write that a
    kill interrupted, and empty folders: what a start killed before its first checkpoint leaves."""
    if not folder.is_dir():
        return False
    return any(p.name != LOCK_NAME and not p.name.endswith(".tmp") and (p.is_file() or holds_files(p))
               for p in folder.iterdir())


def check_new_run_folder(folder: Path, option: str = "--out") -> None:
    """Refuse a path that is a file or already holds a run, before anything is written."""
    if folder.exists() and not folder.is_dir():
        raise MnistgenError(f"{option} {folder} is a file; it must name a folder (new or empty)")
    if holds_files(folder):
        raise MnistgenError(f"{folder} already holds files; pass --resume {folder} to continue, or another {option}")


def make_new_run_folder(folder: Path) -> tuple[RunFolderLock, bool]:
    """Create (or take an empty) run folder and lock it. Returns the held lock and whether the
    folder was created here, so that a failed start can remove exactly what it made."""
    check_new_run_folder(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistgenError(f"cannot create run folder {folder}: {exc.strerror or exc}") from None
    lock = RunFolderLock(folder).acquire()
    try:  # checked again under the lock: another process may have filled it since the first look
        check_new_run_folder(folder)
    except MnistgenError:
        lock.release()
        raise
    return lock, created


def remove_failed_start(folder: Path, created: bool) -> None:
    """Undo a start that failed before training: the folder if we made it, else its contents."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for p in folder.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
