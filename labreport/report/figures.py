"""The report's figures: learning curves, confusion matrices, comparisons, HOG, samples, equations.

Two phases (pelican-style): the ``Figures`` methods only *plan* a figure -- its file name
is a hash of everything drawn (data, titles, size, ``FIG_VERSION``) -- and return a
:class:`FigureRef` at once; :meth:`Figures.draw_pending` then draws the files that do
not exist yet. So a re-render with unchanged results draws nothing and does not even
import matplotlib. Files are written atomically (temp file + ``os.replace``).

PNG at the printed size and 150 dpi: WeasyPrint lays those out much faster than dense
SVG plots. Equations are drawn with matplotlib's mathtext (no TeX, no browser).
No TensorFlow here, and no dependency on ``features.py``: the HOG illustration calls
scikit-image directly on one image.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labreport.results.store import write_bytes_atomic

FIG_VERSION = "7"  # bump when the drawing code changes: every figure is redrawn
DPI = 150
EQ_DPI = 220
MM_PER_INCH = 25.4
TEXT_WIDTH_MM = 170.0
PART_COLORS = {"raw": "#1f77b4", "hog": "#ff7f0e", "cnn": "#2ca02c", "fashion": "#d62728"}
TRAIN_COLOR, TEST_COLOR = "#1f5fa8", "#d1495b"


@dataclass(frozen=True)
class FigureRef:
    """A figure file in ``figures_dir`` (maybe not drawn yet) and how to print it."""

    path: Path
    alt: str
    dpi: int = DPI

    @property
    def name(self) -> str:
        return self.path.name

    def size_px(self) -> tuple[int, int]:
        """Width, height from the PNG header (no decoding): the file must exist."""
        with open(self.path, "rb") as f:
            head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"{self.path} is not a PNG")
        return struct.unpack(">II", head[16:24])

    @property
    def width_mm(self) -> float:
        return round(self.size_px()[0] / self.dpi * MM_PER_INCH, 2)

    @property
    def height_mm(self) -> float:
        return round(self.size_px()[1] / self.dpi * MM_PER_INCH, 2)

    def src(self, relative_to: Path) -> str:
        """URL of the file relative to the HTML file's folder (POSIX separators)."""
        return Path(os.path.relpath(self.path, relative_to)).as_posix()


def _hash(kind: str, inputs: Any) -> str:
    blob = json.dumps({"kind": kind, "v": FIG_VERSION, "in": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _finite_list(xs: Sequence[float]) -> list[float | None]:
    """JSON-safe (None for NaN/inf) so the hash is stable and the plot shows gaps."""
    return [float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None for x in xs]


class Figures:
    """Plan figures by content hash; draw the missing ones with :meth:`draw_pending`."""

    def __init__(self, figures_dir: Path):
        self.dir = Path(figures_dir)
        self.pending: dict[Path, tuple[str, dict]] = {}
        self.used: list[Path] = []
        self.errors: list[str] = []  # figures that could not be drawn (the report prints without them)

    # ------------------------------------------------------------------ planning
    def _plan(self, kind: str, inputs: dict, alt: str, dpi: int = DPI) -> FigureRef:
        path = self.dir / f"{kind}-{_hash(kind, inputs)}.png"
        if not path.exists():
            self.pending[path] = (kind, inputs)
        self.used.append(path)
        return FigureRef(path, alt, dpi)

    def curves(self, name: str, history: dict[str, list[float]], best_epoch: int | None,
               std: dict[str, list[float]] | None = None, n_runs: int = 1) -> FigureRef:
        """One run's curves, or (``std`` given) the mean of ``n_runs`` runs with a band of ± one std."""
        inputs = {
            "title": name,
            "loss": _finite_list(history.get("loss", [])),
            "val_loss": _finite_list(history.get("val_loss", [])),
            "accuracy": _finite_list(history.get("accuracy", [])),
            "val_accuracy": _finite_list(history.get("val_accuracy", [])),
            "best_epoch": best_epoch,
            "size_mm": (TEXT_WIDTH_MM, 54),
        }
        alt = f"{name}: training and test loss and accuracy per epoch"
        if std is not None:  # only then: a single run's figure keeps its name (hash) and pixels
            inputs["std"] = {k: _finite_list(std.get(k, [])) for k in ("loss", "val_loss", "accuracy", "val_accuracy")}
            inputs["n_runs"] = n_runs
            alt = f"{name}: mean ± std over {n_runs} runs of the training and test loss and accuracy per epoch"
        return self._plan("curves", inputs, alt)

    def confusion(self, name: str, matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> FigureRef:
        long = max(len(c) for c in class_names) > 2
        inputs = {"title": name, "cm": [[int(v) for v in row] for row in matrix],
                  "names": list(class_names), "size_mm": (90, 82) if long else (76, 68)}
        return self._plan("confusion", inputs, f"{name}: confusion matrix of the test set")

    def part_comparison(self, part: str, rows: Sequence[dict]) -> FigureRef:
        """rows: name, test_accuracy, test_loss, chosen, best (measured runs only)."""
        inputs = {"part": part, "rows": [dict(r) for r in rows],
                  "size_mm": (TEXT_WIDTH_MM, 16 + 6.5 * max(len(rows), 1)), "color": PART_COLORS.get(part, "#555")}
        return self._plan("compare", inputs, f"part {part}: test accuracy and test loss per experiment")

    def capacity(self, points: Sequence[dict]) -> FigureRef:
        """points: name, part, n_params, test_accuracy, chosen."""
        inputs = {"points": [dict(p) for p in points], "size_mm": (TEXT_WIDTH_MM, 75)}
        return self._plan("capacity", inputs, "number of parameters vs test accuracy of every measured model")

    def hog_illustration(self, data_dir: Path | None) -> FigureRef:
        source = _data_stamp(data_dir, "mnist")
        inputs = {"source": source, "size_mm": (TEXT_WIDTH_MM, 50)}
        what = "an MNIST test image" if source else "a synthetic digit-like image (build/data/mnist.npz not found)"
        return self._plan("hog", inputs, f"HOG of {what}: image, gradient magnitude, HOG cells")

    def samples(self, dataset: str, data_dir: Path | None, class_names: Sequence[str]) -> FigureRef | None:
        source = _data_stamp(data_dir, dataset)
        if not source:
            return None
        inputs = {"source": source, "dataset": dataset, "names": list(class_names), "size_mm": (TEXT_WIDTH_MM, 44)}
        return self._plan("samples", inputs, f"two test images of each class of {dataset}")

    def equation(self, tex: str, fontsize: float = 11.0, alt: str = "") -> FigureRef:
        return self._plan("eq", {"tex": tex, "fontsize": fontsize}, alt or tex, dpi=EQ_DPI)

    # ------------------------------------------------------------------ drawing
    def draw_pending(self, workers: int = 1) -> int:
        """Draw every planned figure whose file is missing; return how many were drawn."""
        jobs = [(str(p), kind, inputs) for p, (kind, inputs) in self.pending.items() if not p.exists()]
        self.pending.clear()
        if not jobs:
            return 0
        self.dir.mkdir(parents=True, exist_ok=True)
        if workers > 1 and len(jobs) >= 8:
            import multiprocessing
            import threading
            from concurrent.futures import ProcessPoolExecutor

            # fork is the fastest start, but only safe while this process runs a single thread.
            methods = multiprocessing.get_all_start_methods()
            method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
            ctx = multiprocessing.get_context(method)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                outcomes = list(pool.map(_draw_job, jobs, chunksize=max(1, len(jobs) // (workers * 3))))
        else:
            outcomes = [_draw_job(job) for job in jobs]
        self.errors.extend(e for e in outcomes if e)
        return sum(1 for e in outcomes if not e)


def _data_stamp(data_dir: Path | None, dataset: str) -> dict | None:
    """Identity of the cached data file without reading it (path, size, mtime)."""
    if data_dir is None:
        return None
    path = Path(data_dir) / f"{dataset}.npz"
    try:
        st = path.stat()
    except OSError:
        return None
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ---------------------------------------------------------------------- drawing workers
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6.5,
        "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "axes.spines.top": False,
        "axes.spines.right": False, "figure.dpi": DPI, "savefig.dpi": DPI,
        "font.family": "DejaVu Sans", "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5,
    })
    return plt


def _figure(size_mm: Sequence[float], margins_mm: Sequence[float] = (12, 3, 10, 5), gap_mm: float = 14):
    """A figure of the printed size with fixed margins (left, right, bottom, top) in mm.

    Fixed margins instead of constrained layout: several times faster, and every
    figure of a kind gets the same geometry.
    """
    plt = _plt()
    w, h = size_mm
    fig = plt.figure(figsize=(w / MM_PER_INCH, h / MM_PER_INCH))
    left, right, bottom, top = margins_mm
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap_mm / ((w - left - right) / 2), hspace=0.05)
    return plt, fig


def _save(plt, fig, path: str, *, dpi: int = DPI, tight: bool = False) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None,
                pad_inches=0.02 if tight else 0.1, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(Path(path), buf.getvalue())


def _draw_job(job: tuple[str, str, dict]) -> str:
    """Draw one figure; return '' or the reason it failed (one bad result must not sink the report)."""
    path, kind, inputs = job
    try:
        DRAWERS[kind](path, inputs)
    except Exception as exc:  # noqa: BLE001 - reported to the caller with the figure's identity
        try:
            import matplotlib.pyplot as plt

            plt.close("all")
        except Exception:  # noqa: BLE001
            pass
        return f"figure {Path(path).name} ({kind}) could not be drawn: {type(exc).__name__}: {exc}"
    return ""


def _arr(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _draw_curves(path: str, d: dict) -> None:
    plt, fig = _figure(d["size_mm"], (13, 3, 9, 5), gap_mm=15)
    ax_loss, ax_acc = fig.subplots(1, 2)
    loss, val = _arr(d["loss"]), _arr(d["val_loss"])
    acc, vacc = _arr(d["accuracy"]), _arr(d["val_accuracy"])
    ep = np.arange(1, max(len(loss), len(val), 1) + 1)
    std = d.get("std")
    band = {k: _arr(v) for k, v in std.items()} if std else {}
    suffix = f" (mean of {d.get('n_runs')})" if std else ""

    def shade(ax, key, values, color, scale=1.0):
        sd = band.get(key)
        if sd is not None and len(sd) == len(values) and len(values):
            ax.fill_between(ep[:len(values)], (values - sd) * scale, (values + sd) * scale, color=color,
                            alpha=0.22, lw=0)

    if len(loss):
        ax_loss.plot(ep[:len(loss)], loss, color=TRAIN_COLOR, lw=1.1, label="training" + suffix)
        shade(ax_loss, "loss", loss, TRAIN_COLOR)
    if len(val):
        ax_loss.plot(ep[:len(val)], val, color=TEST_COLOR, lw=1.1, label="test" + suffix)
        shade(ax_loss, "val_loss", val, TEST_COLOR)
    finite = np.concatenate([loss[np.isfinite(loss)], val[np.isfinite(val)]])
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax_loss.set_yscale("log")
    best = d.get("best_epoch")
    if best and len(val) >= best and np.isfinite(val[best - 1]):
        ax_loss.axvline(best, color="#555", lw=0.7, ls=":")
        ax_loss.plot([best], [val[best - 1]], "o", color=TEST_COLOR, ms=3.5, zorder=5)
        right = best > 0.55 * len(val)  # keep the label inside the panel
        ax_loss.annotate(f"min test loss\nepoch {best}: {val[best - 1]:.4f}", (best, val[best - 1]),
                         xytext=(-4 if right else 4, 8), textcoords="offset points", fontsize=6, color="#333",
                         ha="right" if right else "left")
    ax_loss.set(title="Loss (categorical cross-entropy)", xlabel="epoch", ylabel="loss")
    ax_loss.legend(loc="upper right", frameon=False)
    if len(acc):
        ax_acc.plot(ep[:len(acc)], acc * 100, color=TRAIN_COLOR, lw=1.1, label="training" + suffix)
        shade(ax_acc, "accuracy", acc, TRAIN_COLOR, 100)
    if len(vacc):
        ax_acc.plot(ep[:len(vacc)], vacc * 100, color=TEST_COLOR, lw=1.1, label="test" + suffix)
        shade(ax_acc, "val_accuracy", vacc, TEST_COLOR, 100)
    both = np.concatenate([acc[np.isfinite(acc)], vacc[np.isfinite(vacc)]]) * 100
    if both.size:
        # Zoom on the interesting part: the last 90% of the epochs decide the reading.
        tail = np.concatenate([a[len(a) // 10:] for a in (acc, vacc) if len(a)]) * 100
        tail = tail[np.isfinite(tail)]
        lo = max(0.0, float(np.min(tail if tail.size else both)) - 0.5)
        ax_acc.set_ylim(lo, min(100.0, float(np.max(both)) + 0.3) if float(np.max(both)) > lo else lo + 1)
    if best and len(vacc) >= best:
        ax_acc.axvline(best, color="#555", lw=0.7, ls=":")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    ax_acc.legend(loc="lower right", frameon=False)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.set_xlim(0.5, max(len(ep), 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(plt, fig, path)


def _draw_confusion(path: str, d: dict) -> None:
    names = d["names"]
    long = max(len(c) for c in names) > 2
    plt, fig = _figure(d["size_mm"], (19, 2, 18, 2) if long else (9, 2, 9, 2))
    ax = fig.subplots()
    cm = np.asarray(d["cm"], dtype=float)
    n = cm.shape[0]
    # Colour the errors, not the diagonal: off-diagonal cells on their own scale.
    off = cm.copy()
    np.fill_diagonal(off, np.nan)
    vmax = np.nanmax(off) if np.isfinite(off).any() and np.nanmax(off) > 0 else 1.0
    ax.imshow(off, cmap="Reds", vmin=0, vmax=vmax)
    diag = np.full_like(cm, np.nan)
    np.fill_diagonal(diag, np.diag(cm))
    ax.imshow(diag, cmap="Greens", vmin=0, vmax=max(np.nanmax(diag) if n else 1, 1) * 1.6)
    fs = 5.2 if n <= 10 else 4
    for i in range(n):
        for j in range(n):
            v = int(cm[i, j])
            if v == 0 and i != j:
                continue
            dark = (i != j and v > 0.6 * vmax)
            ax.text(j, i, f"{v}", ha="center", va="center", fontsize=fs,
                    color="white" if dark else "#111", fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(n), names, rotation=55 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.grid(False)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.6)
    ax.tick_params(which="minor", length=0)
    _save(plt, fig, path)


def _draw_compare(path: str, d: dict) -> None:
    rows = d["rows"]
    label_mm = 4 + 1.25 * max((len(r["name"]) + (10 if r.get("chosen") else 0) for r in rows), default=8)
    plt, fig = _figure(d["size_mm"], (label_mm, 3, 10, 5), gap_mm=6)
    ax_acc, ax_loss = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    y = np.arange(len(rows))[::-1]
    names = [r["name"] + ("  (chosen)" if r.get("chosen") else "") for r in rows]
    accs = np.array([r["test_accuracy"] * 100 for r in rows]) if rows else np.zeros(0)
    losses = np.array([r["test_loss"] if r["test_loss"] is not None else np.nan for r in rows]) if rows else np.zeros(0)
    color = d["color"]
    for ax, vals, fmt_, title in ((ax_acc, accs, "{:.2f}%", "test accuracy (%)"), (ax_loss, losses, "{:.4f}", "test loss")):
        if len(vals):
            ax.hlines(y, np.nanmin(vals), vals, color=color, alpha=0.35, lw=2)
            for yi, v, r in zip(y, vals, rows):
                ax.plot([v], [yi], "o", ms=4.5 if r.get("best") else 3.5,
                        color="black" if r.get("best") else color, zorder=3)
                if np.isfinite(v):
                    ax.annotate(fmt_.format(v), (v, yi), xytext=(4, 0), textcoords="offset points",
                                va="center", fontsize=6)
            lo, hi = np.nanmin(vals), np.nanmax(vals)
            pad = (hi - lo) * 0.25 or max(abs(hi) * 0.01, 0.01)
            ax.set_xlim(lo - pad * 0.3, hi + pad * 1.4)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    ax_acc.set_yticks(y, names)
    ax_acc.set_ylim(-0.7, len(rows) - 0.3)
    ax_loss.tick_params(axis="y", length=0)
    ax_acc.text(0, -0.04 - 0.6 / max(len(rows), 1), "black dot: best test accuracy; axes do not start at 0",
                transform=ax_acc.transAxes, fontsize=5.5, color="#555", va="top")
    _save(plt, fig, path)


def _draw_capacity(path: str, d: dict) -> None:
    plt, fig = _figure(d["size_mm"], (13, 24, 10, 6))
    ax = fig.subplots()
    pts = d["points"]
    for part, color in PART_COLORS.items():
        mine = [p for p in pts if p["part"] == part]
        if not mine:
            continue
        ax.scatter([p["n_params"] for p in mine], [p["test_accuracy"] * 100 for p in mine], s=16, color=color,
                   label=part, zorder=3, edgecolor="white", linewidth=0.4)
        for p in mine:
            if p.get("chosen"):
                ax.scatter([p["n_params"]], [p["test_accuracy"] * 100], s=60, facecolor="none",
                           edgecolor="black", linewidth=0.8, zorder=4)
                ax.annotate(p["name"], (p["n_params"], p["test_accuracy"] * 100), xytext=(6, 3),
                            textcoords="offset points", fontsize=5.8)
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel="test accuracy (%)",
           title="Capacity (number of parameters) vs test accuracy; circled: the chosen models")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="part", borderaxespad=0)
    _save(plt, fig, path)


def _synthetic_digit() -> np.ndarray:
    """A seeded, digit-like 28x28 uint8 image (a thick '7' with a bar)."""
    img = np.zeros((28, 28))
    yy, xx = np.mgrid[0:28, 0:28]
    img[5:9, 6:22] = 1.0
    for t in np.linspace(0, 1, 60):
        cy, cx = 8 + 15 * t, 21 - 9 * t
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.5)
    img[14:16, 10:19] = 1.0
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _load_images(source: dict | None, n_per_class: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    if not source:
        return None
    try:
        with np.load(source["path"], allow_pickle=False) as npz:
            x, y = npz["x_test"], npz["y_test"]
    except (OSError, KeyError, ValueError):
        return None
    return x, y


def _draw_hog(path: str, d: dict) -> None:
    from skimage.feature import hog

    plt, fig = _figure(d["size_mm"], (1, 1, 1, 9), gap_mm=9)
    loaded = _load_images(d["source"])
    if loaded is not None:
        x, y = loaded
        idx = int(np.flatnonzero(y == 4)[0]) if (y == 4).any() else 0
        img, label = x[idx], f"MNIST test image #{idx} (a {int(y[idx])})"
    else:
        img, label = _synthetic_digit(), "synthetic digit-like image"
    im = img.astype(np.float64) / 255.0
    # The centred differences scikit-image's hog uses (borders 0).
    g_row = np.zeros_like(im)
    g_col = np.zeros_like(im)
    g_row[1:-1, :] = im[2:, :] - im[:-2, :]
    g_col[:, 1:-1] = im[:, 2:] - im[:, :-2]
    mag = np.hypot(g_row, g_col)
    axes = fig.subplots(1, 4)
    axes[0].imshow(img, cmap="gray_r")
    axes[0].set_title(f"{label}\n28 x 28 pixels")
    axes[1].imshow(mag, cmap="magma")
    axes[1].set_title("gradient magnitude\n√(g_row² + g_col²)")
    for ax, ppc in ((axes[2], 4), (axes[3], 7)):
        feats = hog(im, orientations=8, pixels_per_cell=(ppc, ppc), cells_per_block=(1, 1))
        cells = 28 // ppc
        _hog_glyphs(ax, feats.reshape(cells, cells, 8), ppc)
        ax.set_title(f"HOG {ppc} x {ppc}-px cells, 8 bins:\n{cells} x {cells} x 8 = {feats.size} features")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for sp in ax.spines.values():
            sp.set_visible(False)
    _save(plt, fig, path)


def _hog_glyphs(ax, hist: np.ndarray, ppc: int) -> None:
    """Draw HOG cells the way skimage's ``visualize=True`` does, but as vectors (sharp at any size).

    One line per orientation bin through each cell centre, perpendicular to the bin's
    gradient direction (i.e. along the edge), brightness = the bin's value.
    """
    from matplotlib.collections import LineCollection

    n_rows, n_cols, n_or = hist.shape
    mid = np.pi * (np.arange(n_or) + 0.5) / n_or
    radius = ppc / 2 * 0.9
    dr, dc = radius * np.sin(mid), radius * np.cos(mid)
    segs, vals = [], []
    for r in range(n_rows):
        for c in range(n_cols):
            cy, cx = r * ppc + ppc / 2 - 0.5, c * ppc + ppc / 2 - 0.5
            for o in range(n_or):
                segs.append([(cx + dr[o], cy - dc[o]), (cx - dr[o], cy + dc[o])])
                vals.append(hist[r, c, o])
    vals = np.asarray(vals)
    ax.set_facecolor("black")
    ax.imshow(np.zeros((28, 28)), cmap="gray", vmin=0, vmax=1)
    lc = LineCollection(segs, cmap="gray", linewidths=1.0 if ppc < 6 else 1.4)
    lc.set_array(vals)
    lc.set_clim(0, vals.max() if vals.size and vals.max() > 0 else 1)
    ax.add_collection(lc)
    for k in range(0, 29, ppc):
        ax.axhline(k - 0.5, color="#3a7", lw=0.4)
        ax.axvline(k - 0.5, color="#3a7", lw=0.4)
    ax.set_xlim(-0.5, 27.5)
    ax.set_ylim(27.5, -0.5)


def _draw_samples(path: str, d: dict) -> None:
    plt, fig = _figure(d["size_mm"], (1, 1, 1, 5), gap_mm=1)
    loaded = _load_images(d["source"])
    names = d["names"]
    axes = fig.subplots(2, len(names), gridspec_kw={"wspace": 0.08, "hspace": 0.04})
    for c, name in enumerate(names):
        idx = np.flatnonzero(loaded[1] == c)[:2] if loaded is not None else []
        for r in range(2):
            ax = axes[r, c]
            if r < len(idx):
                ax.imshow(loaded[0][idx[r]], cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for s in ax.spines.values():
                s.set_visible(False)
            if r == 0:
                ax.set_title(name, fontsize=6)
    _save(plt, fig, path)


def _draw_equation(path: str, d: dict) -> None:
    plt = _plt()
    fig = plt.figure(figsize=(0.01, 0.01))
    fig.text(0, 0, d["tex"], fontsize=d["fontsize"], math_fontfamily="dejavuserif")
    _save(plt, fig, path, dpi=EQ_DPI, tight=True)


DRAWERS: dict[str, Callable[[str, dict], None]] = {
    "curves": _draw_curves,
    "confusion": _draw_confusion,
    "compare": _draw_compare,
    "capacity": _draw_capacity,
    "hog": _draw_hog,
    "samples": _draw_samples,
    "eq": _draw_equation,
}

# The equations of question 1, as drawn (mathtext: a TeX subset, no LaTeX needed).
EQUATIONS = {
    "rmsprop_avg": r"$E[g^2]_t = \rho\, E[g^2]_{t-1} + (1-\rho)\, g_t^2$",
    "rmsprop_update": r"$w_{t+1} = w_t - \frac{\eta\, g_t}{\sqrt{E[g^2]_t + \epsilon}}$",
    "rmsprop_textbook": r"$w_{t+1} = w_t - \frac{\eta\, g_t}{\sqrt{E[g^2]_t} + \epsilon}$",
    "rmsprop_centered": r"$E[g]_t = \rho\, E[g]_{t-1} + (1-\rho)\, g_t, \quad"
                        r"w_{t+1} = w_t - \frac{\eta\, g_t}{\sqrt{E[g^2]_t - E[g]_t^2 + \epsilon}}$",
    "rmsprop_momentum": r"$m_t = \mu\, m_{t-1} + \frac{\eta\, g_t}{\sqrt{E[g^2]_t + \epsilon}}, \quad w_{t+1} = w_t - m_t$",
    "crossentropy": r"$L(y, \hat{y}) = -\sum_{i=1}^{10} y_i \log \hat{y}_i$",
    "crossentropy_batch": r"$L = -\frac{1}{N} \sum_{n=1}^{N} \sum_{i=1}^{10} y_{n,i} \log \hat{y}_{n,i}$",
    "softmax": r"$\hat{y}_i = \frac{e^{z_i}}{\sum_{j=1}^{10} e^{z_j}}$",
}
