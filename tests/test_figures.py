"""figures.py: content-hashed, atomically written PNGs at the printed size; no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.synthetic import make_result, write_fake_data
from labreport import config
from labreport.report.figures import DPI, EQUATIONS, MM_PER_INCH, TEXT_WIDTH_MM, Figures, _finite_list

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lab():
    return config.load(ROOT / "experiments.toml")


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_are_drawn_once_at_printed_size(tmp_path, lab):
    spec = lab.by_name("raw-tanh-250")
    result = make_result(spec)
    figs = Figures(tmp_path / "figures")
    ref = figs.curves(spec.name, result["history"], result["metrics"]["best_epoch"])
    assert not ref.path.exists() and len(figs.pending) == 1
    assert figs.draw_pending() == 1
    assert _png(ref.path)
    width_px, height_px = ref.size_px()
    assert abs(width_px - TEXT_WIDTH_MM / MM_PER_INCH * DPI) <= 1  # printed width at 150 dpi
    assert abs(ref.width_mm - TEXT_WIDTH_MM) < 0.5
    # Same inputs -> same name, nothing to draw; other inputs -> another file.
    again = Figures(tmp_path / "figures")
    assert again.curves(spec.name, result["history"], result["metrics"]["best_epoch"]).path == ref.path
    assert not again.pending and again.draw_pending() == 0
    other = again.curves(spec.name, result["history"], 3)
    assert other.path != ref.path and again.draw_pending() == 1
    assert not [p for p in (tmp_path / "figures").iterdir() if p.name.endswith(".tmp")]


def test_confusion_with_fashion_class_names(tmp_path, lab):
    spec = lab.by_name("fashion-conv9-100")
    result = make_result(spec)
    figs = Figures(tmp_path)
    ref = figs.confusion(spec.name, result["confusion"], result["class_names"])
    figs.draw_pending()
    assert _png(ref.path) and ref.width_mm > 80  # room for the rotated "Ankle boot" labels


def test_diverged_history_with_nulls_draws(tmp_path, lab):
    spec = lab.by_name("cnn-relu-25")
    result = make_result(spec, status="diverged")
    assert None in result["history"]["loss"]
    figs = Figures(tmp_path)
    ref = figs.curves(spec.name, result["history"], 2)
    figs.draw_pending()
    assert _png(ref.path)
    assert _finite_list([1.0, float("nan"), None, float("inf")]) == [1.0, None, None, None]


def test_equations_are_rendered_without_a_browser(tmp_path):
    figs = Figures(tmp_path)
    refs = [figs.equation(tex) for tex in EQUATIONS.values()]
    assert figs.draw_pending() == len(EQUATIONS)
    for ref in refs:
        w, h = ref.size_px()
        assert _png(ref.path) and w > h > 10


def test_hog_illustration_synthetic_and_from_data(tmp_path):
    figs = Figures(tmp_path / "figures")
    synthetic = figs.hog_illustration(tmp_path / "no-data-here")
    assert "synthetic" in synthetic.alt
    write_fake_data(tmp_path / "data")
    real = figs.hog_illustration(tmp_path / "data")
    samples = figs.samples("mnist", tmp_path / "data", [str(i) for i in range(10)])
    assert figs.samples("mnist", tmp_path / "no-data-here", ["0"]) is None
    assert "MNIST test image" in real.alt and real.path != synthetic.path
    assert figs.draw_pending() == 3
    assert all(_png(r.path) for r in (synthetic, real, samples))


def test_parallel_drawing_matches_serial_names(tmp_path, lab):
    figs = Figures(tmp_path)
    refs = []
    for spec in lab.experiments[:5]:
        r = make_result(spec)
        refs.append(figs.curves(spec.name, r["history"], r["metrics"]["best_epoch"]))
        refs.append(figs.confusion(spec.name, r["confusion"], r["class_names"]))
    assert figs.draw_pending(workers=2) == 10
    assert all(_png(r.path) for r in refs)


def test_figures_and_report_model_do_not_import_tensorflow():
    code = ("import sys; import labreport.report.figures, labreport.report.model, labreport.report.render; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
