"""features: batch HOG equal to scikit-image's, chunking, the feature cache, the figure data.

scikit-image is the reference: every comparison runs ``skimage.feature.hog`` on
each image. The images are tiny seeded synthetic sets (random bytes, MNIST-like
strokes, and the degenerate cases: all zero, constant, one pixel, hard edges).
Timings live in bench/bench_hog.py, not here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.feature import hog

from labreport.train import features
from labreport.config.spec import HogSpec
from labreport.train.features import cached_hog, hog_batch

CONFIGS = [(4, 8), (7, 8), (7, 16), (4, 16)]
TOLERANCE = 1e-6


def strokes(n: int, seed: int, side: int = 28) -> np.ndarray:
    """MNIST-like uint8 digits: 1-3 thick anti-aliased segments on black."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float64)
    ink = np.zeros((n, side, side))
    for _ in range(3):
        a = rng.uniform(4, side - 4, size=(n, 2, 1, 1))
        b = rng.uniform(4, side - 4, size=(n, 2, 1, 1))
        width = rng.uniform(0.8, 2.2, size=(n, 1, 1))
        present = rng.random((n, 1, 1)) < 0.8
        d_r, d_c = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        along = (rows - a[:, 0]) * d_r + (cols - a[:, 1]) * d_c
        t = np.clip(along / (d_r**2 + d_c**2 + 1e-9), 0, 1)
        dist = np.hypot(rows - a[:, 0] - t * d_r, cols - a[:, 1] - t * d_c)
        ink = np.maximum(ink, np.where(present, np.clip(width + 0.5 - dist, 0, 1), 0))
    return np.round(ink * 255).astype(np.uint8)


def degenerate(side: int = 28) -> np.ndarray:
    """All zero, constants, a single pixel, hard 0/255 edges, a checkerboard, a ramp."""
    images = np.zeros((10, side, side), dtype=np.uint8)
    images[1] = 255
    images[2] = 77
    images[3, 13, 13] = 255
    images[4, :, side // 2 :] = 255  # vertical edge
    images[5, side // 3 :, :] = 255  # horizontal edge
    images[6] = (np.add.outer(np.arange(side), np.arange(side)) % 2) * 255
    images[7] = np.add.outer(np.arange(side), np.arange(side)) * 4  # diagonal ramp
    images[8, 0, :] = 200  # ink on the border rows/columns only
    images[8, :, -1] = 100
    images[9] = np.triu(np.full((side, side), 255, dtype=np.uint8))  # 45 degree edge
    return images


@pytest.fixture(scope="module")
def byte_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([
        rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        strokes(50, seed=1),
        degenerate(),
    ])


def reference(images: np.ndarray, p: int, o: int) -> np.ndarray:
    return np.stack([
        hog(image, orientations=o, pixels_per_cell=(p, p), cells_per_block=(1, 1))
        for image in images
    ])


# --------------------------------------------------------------------------- equality with skimage


@pytest.mark.parametrize("p, o", CONFIGS)
def test_equals_skimage_on_byte_images(byte_images, p, o):
    expected = reference(byte_images, p, o)
    got = hog_batch(byte_images, p, o)
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    assert np.abs(got.astype(np.float64) - expected).max() < TOLERANCE
    # Stronger than the contract: the histograms are computed exactly like the
    # Cython, so the only difference left is the final cast to float32.
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize("p, o", CONFIGS)
def test_equals_skimage_on_float_images(p, o):
    rng = np.random.default_rng(2)
    for images in (rng.random((12, 28, 28)), rng.random((12, 28, 28)).astype(np.float32)):
        images[0] = 0.0
        images[1] = 0.5
        expected = reference(images, p, o)
        got = hog_batch(images, p, o)
        assert np.abs(got.astype(np.float64) - expected).max() < TOLERANCE


def test_byte_valued_images_of_other_dtypes_match_too(byte_images):
    expected = reference(byte_images[:20], 7, 8)
    for dtype in (np.float32, np.float64, np.int64, np.uint16):
        got = hog_batch(byte_images[:20].astype(dtype), 7, 8)
        assert np.abs(got.astype(np.float64) - expected).max() < TOLERANCE, dtype


@pytest.mark.parametrize(
    "height, width, p, o",
    [(28, 28, 5, 9), (28, 28, 3, 7), (13, 29, 4, 8), (3, 3, 3, 1), (2, 5, 2, 4)],
)
def test_other_shapes_and_partial_cells(height, width, p, o):
    # H and W not multiples of p: skimage ignores the pixels of partial cells
    images = np.random.default_rng(3).integers(0, 256, (5, height, width), dtype=np.uint8)
    expected = reference(images, p, o)
    got = hog_batch(images, p, o)
    assert got.shape == (5, (height // p) * (width // p) * o)
    assert np.abs(got.astype(np.float64) - expected).max() < TOLERANCE


def test_degenerate_images_give_known_values():
    got = hog_batch(degenerate(), 7, 8)
    assert not got[:3].any()  # zero and constant images: no gradient at all
    assert np.isfinite(got).all()
    assert got.max() <= 1.0


# --------------------------------------------------------------------------- shapes, chunks, errors


@pytest.mark.parametrize(
    "p, o, length", [(4, 8, 392), (7, 8, 128), (7, 16, 256), (4, 16, 784), (5, 9, 225)]
)
def test_feature_length(p, o, length):
    assert HogSpec(p, o).n_features == length  # what the model's input layer is built with
    assert hog_batch(np.zeros((3, 28, 28), np.uint8), p, o).shape == (3, length)


def test_feature_length_of_other_sides():
    assert hog_batch(np.zeros((2, 32, 32), np.uint8), 4, 8).shape == (2, 8 * 8 * 8)
    assert hog_batch(np.zeros((2, 30, 30), np.uint8), 7, 8).shape == (2, 4 * 4 * 8)


def test_empty_batch():
    out = hog_batch(np.zeros((0, 28, 28), np.uint8), 4, 8)
    assert out.shape == (0, 392) and out.dtype == np.float32


def test_chunk_size_does_not_change_the_result(byte_images):
    whole = hog_batch(byte_images, 4, 8, chunk=len(byte_images))
    for chunk in (1, 7, 64, 1000):
        np.testing.assert_array_equal(hog_batch(byte_images, 4, 8, chunk=chunk), whole)


@pytest.mark.parametrize(
    "images, p, o, message",
    [
        (np.zeros((28, 28), np.uint8), 4, 8, "shape"),
        (np.zeros((2, 28, 28), np.uint8), 0, 8, "pixels_per_cell"),
        (np.zeros((2, 28, 28), np.uint8), 4, 0, "orientations"),
        (np.zeros((2, 28, 28), np.uint8), 29, 8, "smaller than one cell"),
        (np.full((2, 28, 28), np.nan), 4, 8, "NaN"),
        (np.zeros((2, 28, 28), np.complex64), 4, 8, "real-valued"),
    ],
)
def test_bad_input_is_a_clear_error(images, p, o, message):
    with pytest.raises(ValueError, match=message):
        hog_batch(images, p, o)


def test_bad_chunk():
    with pytest.raises(ValueError, match="chunk"):
        hog_batch(np.zeros((2, 28, 28), np.uint8), 4, 8, chunk=0)


def test_import_loads_neither_tensorflow_nor_skimage():
    code = (
        "import sys, labreport.train.features; "
        "print(sorted({'tensorflow', 'keras', 'skimage'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- cache


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of features.hog_batch (and still computes)."""
    calls = []
    real = features.hog_batch

    def counting(images, p, o, **kwargs):
        calls.append((len(images), p, o))
        return real(images, p, o, **kwargs)

    monkeypatch.setattr(features, "hog_batch", counting)
    return calls


def test_cache_computes_once_then_loads(tmp_path, byte_images, spy, monkeypatch):
    first = cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="abc123-train")
    assert spy == [(len(byte_images), 7, 8)]
    path = tmp_path / "hog-abc123-train-p7-o8.npy"
    assert path.is_file()
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp file left behind

    def must_not_run(*args, **kwargs):
        raise AssertionError("hog_batch called although the cache holds the features")

    monkeypatch.setattr(features, "hog_batch", must_not_run)
    second = cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="abc123-train")
    np.testing.assert_array_equal(second, first)
    assert second.dtype == np.float32


def test_cache_is_per_key_and_parameters(tmp_path, byte_images, spy):
    cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="k")
    cached_hog(byte_images, 4, 8, cache_dir=tmp_path, key="k")
    cached_hog(byte_images, 7, 16, cache_dir=tmp_path, key="k")
    cached_hog(byte_images[:5], 7, 8, cache_dir=tmp_path, key="other")
    cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="k")  # hit
    assert len(spy) == 4
    assert sorted(os.listdir(tmp_path)) == [
        "hog-k-p4-o8.npy", "hog-k-p7-o16.npy", "hog-k-p7-o8.npy", "hog-other-p7-o8.npy",
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"not an npy file"),
        lambda path: path.write_bytes(path.read_bytes()[:100]),  # truncated
        lambda path: np.save(path, np.zeros((3, 128), np.float32)),  # wrong shape
        lambda path: np.save(path, np.zeros((110, 128), np.float64)),  # wrong dtype
        lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True),  # pickle
    ],
)
def test_a_damaged_cache_file_is_a_miss(tmp_path, byte_images, spy, damage):
    assert len(byte_images) == 110
    first = cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="k")
    path = tmp_path / "hog-k-p7-o8.npy"
    damage(path)
    again = cached_hog(byte_images, 7, 8, cache_dir=tmp_path, key="k")
    assert len(spy) == 2  # recomputed
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(np.load(path), first)  # and repaired


def test_cache_creates_its_directory(tmp_path, byte_images):
    out = cached_hog(byte_images[:3], 4, 8, cache_dir=tmp_path / "a" / "b", key="k")
    assert out.shape == (3, 392)
    assert (tmp_path / "a" / "b" / "hog-k-p4-o8.npy").is_file()


@pytest.mark.parametrize("key", ["", "../up", "a/b", "with space", ".hidden"])
def test_cache_key_must_be_a_plain_file_name_part(tmp_path, key):
    with pytest.raises(ValueError, match="cache key"):
        cached_hog(np.zeros((1, 28, 28), np.uint8), 4, 8, cache_dir=tmp_path, key=key)
