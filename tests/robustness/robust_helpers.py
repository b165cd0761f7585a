"""Shared pieces of the robustness suite: the CLI as a user runs it, build/ snapshots, fake trainers.

Importable both by the tests (pytest puts this folder on sys.path) and by the child scripts the
kill/lock tests spawn (they insert this folder themselves). No TensorFlow anywhere.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from labreport.results import metrics
from labreport.train import datasets
from labreport.train import engine

HERE = Path(__file__).resolve().parent

MINIMAL_TOML = """\
[report]
title = "Lab"

[[experiment]]
name = "raw-1"
part = "raw"
hidden = 16
activation = "relu"
batch_size = 64
epochs = 2
"""


# --------------------------------------------------------------------------- the CLI


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no network, no data anywhere and no package sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABREPORT_", "PIP_"))}
    empty = tmp_path / "_empty"
    empty.mkdir(exist_ok=True)
    env.update(
        LABREPORT_OFFLINE="1",           # source "web" skipped
        KERAS_HOME=str(tmp_path / "_keras"),  # source "system": no Keras download cache
        PIP_NO_INDEX="1",                # source "package" (pip download): fails without touching the network
        PIP_FIND_LINKS=str(empty),
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PATH=str(empty),                 # no apt-get, dpkg-deb (pip runs as `sys.executable -m pip`)
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m labreport ARGS`` in ``cwd``, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, capture_output=True, text=True,
                          env=env if env is not None else isolated_env(cwd), timeout=timeout)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder``: (kind, size, mtime_ns, sha256) - to prove nothing changed."""
    out: dict[str, tuple] = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(folder))
        if path.is_dir():
            out[rel] = ("dir", st.st_mtime_ns)
        else:
            out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def temp_files(folder: Path) -> list[str]:
    """Leftovers of store.atomic_write (``.NAME.PID.HEX.tmp``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


# --------------------------------------------------------------------------- fakes for the runner seams


def tiny_dataset(name: str, data_dir: Path | None = None, **_: object) -> datasets.Dataset:
    """Stand-in for datasets.load: 40 train / 20 test images, seeded (module level: picklable)."""
    rng = np.random.default_rng(0)

    def split(n: int):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        return x, y

    (x, y), (xt, yt) = split(40), split(20)
    return datasets.Dataset(name=name, x_train=x, y_train=y, x_test=xt, y_test=yt, source="synthetic")


def ok_result(spec, dataset, *, quick: bool = False, cache_key: str = "", **_: object) -> dict:
    """What the engine returns for a successful 2-epoch run (numbers invented, structure real)."""
    result = engine.base_result(spec, status="ok", quick=quick, cache_key=cache_key, dataset=dataset)
    history = {"loss": [1.2, 0.6], "accuracy": [0.5, 0.8], "val_loss": [1.3, 0.7], "val_accuracy": [0.45, 0.75]}
    result["history"] = engine.clean_history(history)
    y_true = np.asarray(dataset.y_test)
    y_pred = y_true.copy()
    y_pred[::4] = (y_pred[::4] + 1) % 10  # a quarter wrong
    m = metrics.classification_metrics(y_true, y_pred, list(spec.class_names))
    result.update(confusion=m["confusion"], per_class=m["per_class"], confused_pairs=m["confused_pairs"])
    result["metrics"] = {**engine.curve_metrics(result["history"]), "macro_f1": m["macro_f1"]}
    result["data"].update(n_train=len(dataset.y_train), n_test=len(dataset.y_test))
    result["params"]["keras_total"] = result["params"]["total"]
    result.update(duration_s=0.5, epoch_s=0.25, started_at="2025-01-01T10:00:00+00:00",
                  finished_at="2025-01-01T10:00:01+00:00")
    return result


DIVERGED_AT = 2
DIVERGED_ERROR = f"the training loss became NaN or infinite at epoch {DIVERGED_AT}"


def diverged_result(spec, dataset, *, quick: bool = False, cache_key: str = "", **_: object) -> dict:
    """What engine.train_and_evaluate returns when the loss turns NaN at epoch 2 (built with its own helpers)."""
    result = engine.base_result(spec, status="diverged", quick=quick, cache_key=cache_key, dataset=dataset,
                                error=DIVERGED_ERROR)
    raw = {"loss": [2.1, math.nan], "accuracy": [0.2, 0.1], "val_loss": [2.2, math.inf], "val_accuracy": [0.2, 0.1]}
    result["history"] = engine.clean_history(raw)
    result["metrics"] = {**engine.curve_metrics(result["history"]), "diverged_epoch": DIVERGED_AT}
    result["duration_s"] = 0.3
    return result


class FakeTrainer:
    """A ``train=`` seam: records the names it trains; ``how[name]`` picks ok / diverge / raise / nan."""

    def __init__(self, how: dict[str, str] | None = None):
        self.how = how or {}
        self.calls: list[str] = []

    def __call__(self, spec, dataset, **kwargs):
        self.calls.append(spec.name)
        kind = self.how.get(spec.name, "ok")
        log = kwargs.get("log") or (lambda _l: None)
        log(f"fake training of {spec.name} ({kind})")
        if kind == "diverge":
            return diverged_result(spec, dataset, **kwargs)
        if kind == "raise":
            raise FloatingPointError("loss is nan in batch 3")
        result = ok_result(spec, dataset, **kwargs)
        if kind == "nan":  # a trainer that did not clean its numbers: NaN/inf straight from the backend
            result["history"]["loss"][1] = math.nan
            result["metrics"]["test_loss"] = math.inf
        return result


# --------------------------------------------------------------------------- rendering


def render_html(lab, build: Path, figure_cache: Path | None = None, **kwargs):
    """render.render(..., pdf=False), reusing figures an earlier test already drew (drawing is the slow part)."""
    import shutil

    from labreport.report import render

    figures = Path(build) / "figures"
    if figure_cache is not None and figure_cache.exists():
        shutil.copytree(figure_cache, figures, dirs_exist_ok=True)
    kwargs.setdefault("workers", 1)
    result = render.render(lab, build, pdf=False, **kwargs)
    if figure_cache is not None and figures.exists():
        shutil.copytree(figures, figure_cache, dirs_exist_ok=True)
    return result
