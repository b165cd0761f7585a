"""Fit and evaluate one experiment: data set -> inputs -> model -> fit -> metrics -> result dict.

The only module (with ``models``) that touches TensorFlow, and only inside functions:
``runner`` imports this module for ``engine_version`` and the pure helpers without
loading TensorFlow. The training loop is the lab's own: pixels / 255 as float32,
one-hot labels, categorical cross-entropy, ``model.fit`` with the *test* set as
validation data (that is how the lab plots "training" vs "testing" error per epoch),
seeded by ``keras.utils.set_random_seed(spec.seed)``.

The returned dict is the result.json of docs/results.md (minus ``schema``, which
``store.write_result`` adds).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from labreport.results import metrics
from labreport.results.store import finite_or_none as finite
from labreport.config import param_counts
from labreport.config.spec import IMAGE_SIDE, N_CLASSES, ExperimentSpec

# Bump whenever a change here or in models.py changes the numbers a spec produces:
# it is part of every cache key, so all results are retrained. CONV_ENGINE_VERSION is
# bumped instead when only the conv layers' numbers change (the MLPs keep their results).
ENGINE_VERSION = "1"
# 2: the conv bias is added outside oneDNN's fused gradient (models.conv_layer); 1.7x faster
# for the 64-filter model, numbers equal up to float rounding.
# 3: the 9-filter CNNs' steps run in micro-batches of 64 images (models.micro_batch); 1.15-1.4x
# less CPU per epoch, a third to a half of the memory, the same update up to float rounding.
CONV_ENGINE_VERSION = "3"


def engine_version(spec: ExperimentSpec | None = None) -> str:
    """The engine version a result of ``spec`` is computed with: ``1`` for an MLP, ``1+conv3``
    for a CNN (both numbers part of its cache key). Without a spec: every part, for workers
    that must agree with the scheduler on all of them."""
    if spec is None:
        return f"{ENGINE_VERSION}, conv {CONV_ENGINE_VERSION}"
    return version_of(conv=bool(spec.conv))


def version_of(*, conv: bool) -> str:
    """The engine version of a conv model or of an MLP (see ``engine_version``)."""
    return f"{ENGINE_VERSION}+conv{CONV_ENGINE_VERSION}" if conv else ENGINE_VERSION

# Keras evaluates the validation (= test) set after every epoch in batches of the
# training batch size by default: 40 steps at batch 256. Batches of at least this
# size give the same numbers with less per-step overhead; the gain was within the
# noise of the 2-core machine (<3% of an epoch), so the floor stays modest to keep
# the memory of big conv feature maps bounded.
MIN_VALIDATION_BATCH = 2048
# Keras can run several training steps per call into the TF graph: the same numbers
# (identical losses, checked), less Python per step. Measured on 2 cores: 7-25% less
# time per epoch at batch 256-512 (the lab CNN, the HOG MLPs); nothing measurable at
# 15 steps per epoch or fewer (wall times of the 1.26M-parameter CNN at batch 8192
# went both ways, its CPU time did not move). So only for epochs of many small steps.
MAX_STEPS_PER_EXECUTION = 32
MIN_STEPS_FOR_MULTI_STEP = 50

Log = Callable[[str], object]
# (images uint8 (N, 28, 28), pixels_per_cell, orientations, key) -> float32 (N, F).
HogFeatures = Callable[[np.ndarray, int, int, str], np.ndarray]


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class QuickConfig:
    """The caps of ``--quick`` smoke runs (env LABREPORT_QUICK_EPOCHS/_TRAIN/_TEST)."""

    epochs: int = 2
    n_train: int = 2000
    n_test: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QuickConfig:
        env = os.environ if environ is None else environ
        values = {}
        for field_name, var in (("epochs", "LABREPORT_QUICK_EPOCHS"), ("n_train", "LABREPORT_QUICK_TRAIN"),
                                ("n_test", "LABREPORT_QUICK_TEST")):
            raw = env.get(var, "").strip()
            if raw:
                try:
                    value = int(raw)
                except ValueError:
                    raise ValueError(f"{var} must be a positive integer, got {raw!r}") from None
                if value < 1:
                    raise ValueError(f"{var} must be a positive integer, got {raw!r}")
                values[field_name] = value
        return cls(**values)

    @property
    def tag(self) -> str:
        """Part of quick cache keys: other caps are other results."""
        return f"quick-e{self.epochs}-n{self.n_train}-t{self.n_test}"


@dataclass(frozen=True)
class EpochInfo:
    """One finished epoch, as reported to ``on_epoch`` (picklable: it crosses processes)."""

    epoch: int  # 1-based
    epochs: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    epoch_s: float
    elapsed_s: float


@dataclass(frozen=True)
class Inputs:
    """What ``fit`` sees: scaled features and integer labels of both splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str  # one line for the log


# --------------------------------------------------------------------------- TensorFlow


# What the libraries wrote on stderr while TensorFlow was imported in this process (the
# oneDNN and CPU-feature banners, absl's pre-init warning), kept for the next run.log.
_STARTUP_LINES: list[str] = []


@contextlib.contextmanager
def stderr_captured(sink: list[str]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then append its lines to ``sink``.

    TensorFlow's C++ start-up banners bypass ``sys.stderr``: only the descriptor catches them.
    If fd 2 cannot be duplicated (closed), nothing is captured and nothing fails.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        _flush_stderr()
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            sink.extend(line.rstrip() for line in text.splitlines() if line.strip())


def _flush_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def take_startup_lines() -> list[str]:
    """The captured start-up messages not yet handed out (each goes to one run.log only)."""
    lines = list(_STARTUP_LINES)
    _STARTUP_LINES.clear()
    return lines


def tensorflow():
    """Import TensorFlow with its Python logger at ERROR (its retracing notes are noise here).

    The first import in a process runs with fd 2 captured: TensorFlow and Keras print
    their start-up banners there (twice per worker), which belong in run.log, not on the
    console (``train_and_evaluate`` logs them).
    """
    try:
        if "tensorflow" not in sys.modules:
            with stderr_captured(_STARTUP_LINES):
                import tensorflow  # noqa: F401
                import keras  # noqa: F401 - imported here too: it may print its own banners
        import tensorflow as tf
    except ImportError as exc:
        raise ImportError(f"training needs TensorFlow ({exc}); install it with: pip install 'labreport[train]'") from exc

    # Keras retraces once for the last, shorter steps_per_execution chunk of an epoch
    # and warns about it; that is expected, not a problem of the user's config.
    tf.get_logger().setLevel("ERROR")
    keras_pipelines_without_autotune()
    return tf


def data_options():
    """The tf.data options of every pipeline a run trains from: autotuning off.

    tf.data's autotuning runs a model thread per iterator, and Keras makes a new iterator
    each epoch (and one per evaluation). Destroying one waits for that thread, and with
    another process busy on the other core that wait left a worker idle ~1.3 s of every
    epoch (measured: two 1-thread CNN runs side by side, 5.0-5.3 s of wall per epoch for
    3.7 s of CPU; without autotuning 3.8-4.0 s for 3.8-3.9). The batches and their order
    do not depend on it: the order comes from the seeded shuffle, the pipelines are
    deterministic, so the numbers are the same to the bit (tests/test_engine.py).
    """
    tf = sys.modules["tensorflow"]
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


# Off only inside ``keras_autotuning()`` (the bench's plain-notebook baseline).
_KERAS_AUTOTUNE_OFF = True


def keras_pipelines_without_autotune() -> bool:
    """Give the pipelines Keras builds from in-memory arrays (``fit``/``evaluate``/``predict``
    on numpy arrays) ``data_options()``. Keras has no public switch for it, so this wraps its
    array adapter's ``get_tf_dataset`` once (Keras 3, pinned in requirements.txt); if a Keras
    version moves it, training goes on with autotuning and this returns False."""
    try:
        from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter
    except ImportError:
        return False
    current = getattr(ArrayDataAdapter, "get_tf_dataset", None)
    if current is None:
        return False
    if getattr(current, "labreport_without_autotune", False):
        return True

    def get_tf_dataset(self):
        dataset = current(self)
        return dataset.with_options(data_options()) if _KERAS_AUTOTUNE_OFF else dataset

    get_tf_dataset.__wrapped__ = current  # Keras' own
    get_tf_dataset.labreport_without_autotune = True
    ArrayDataAdapter.get_tf_dataset = get_tf_dataset
    return True


@contextlib.contextmanager
def keras_autotuning() -> Iterator[None]:
    """Keras' array pipelines as a plain notebook gets them, with tf.data's autotuning
    (for the bench's naive baseline and the test that the numbers do not depend on it)."""
    global _KERAS_AUTOTUNE_OFF
    tensorflow()
    _KERAS_AUTOTUNE_OFF = False
    try:
        yield
    finally:
        _KERAS_AUTOTUNE_OFF = True


# --------------------------------------------------------------------------- threads


def configure_threads(intra: int, inter: int) -> dict[str, int]:
    """Set TF's thread pools (must precede TF's first op); returns the effective values.

    The runner passes intra-op = cores // jobs and inter-op 1 (runner.thread_split):
    the Keras graphs of these models have little op-level parallelism.
    """
    tf = tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter))
    except RuntimeError:
        pass  # TF already initialised in this process: keep what it runs with
    return thread_settings()


def thread_settings() -> dict[str, int]:
    """The thread pools TF uses (0 = TF's default, which is the number of cores)."""
    tf = tensorflow()

    cpus = os.cpu_count() or 1
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"intra_op": intra or cpus, "inter_op": inter or cpus}


# --------------------------------------------------------------------------- inputs


def subsample_indices(y: np.ndarray, n: int) -> np.ndarray:
    """Deterministic stratified subset of ``n`` indices (sorted), or all if n >= len(y).

    Classes are interleaved by rank within their class (rank / class size), so the
    first n keep each class's share; the same y and n always give the same subset.
    """
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=N_CLASSES)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(y), dtype=np.float64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    share = (rank + 0.5) / counts[y]
    chosen = np.argsort(share, kind="stable")[:n]
    return np.sort(chosen)


def prepare_inputs(
    spec: ExperimentSpec,
    dataset: Any,
    *,
    hog_features: HogFeatures | None = None,
    quick_cfg: QuickConfig | None = None,
) -> Inputs:
    """The spec's features of ``dataset`` (a ``datasets.Dataset``), subsampled in quick mode."""
    x_train, y_train, x_test, y_test = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    train_key, test_key = "train", "test"
    if quick_cfg is not None:
        train_idx = subsample_indices(y_train, quick_cfg.n_train)
        test_idx = subsample_indices(y_test, quick_cfg.n_test)
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        x_test, y_test = x_test[test_idx], y_test[test_idx]
        # The HOG cache must never hand full-size features to a quick run or back.
        train_key, test_key = f"train-q{len(train_idx)}", f"test-q{len(test_idx)}"
    if spec.hog:
        p, o = spec.hog.pixels_per_cell, spec.hog.orientations
        compute = hog_features or _uncached_hog
        stem = dataset.sha256[:16]
        f_train = compute(x_train, p, o, f"{stem}-{train_key}")
        f_test = compute(x_test, p, o, f"{stem}-{test_key}")
        what = f"HOG p{p} o{o}: {f_train.shape[1]} features"
        return Inputs(np.asarray(f_train, np.float32), y_train, np.asarray(f_test, np.float32), y_test,
                      f"{what}, {len(y_train)} train / {len(y_test)} test")
    shape = (IMAGE_SIDE, IMAGE_SIDE, 1) if spec.conv else (IMAGE_SIDE * IMAGE_SIDE,)
    return Inputs(
        _scale(x_train, shape), y_train, _scale(x_test, shape), y_test,
        f"pixels / 255 as {'x'.join(map(str, shape))} float32, {len(y_train)} train / {len(y_test)} test",
    )


def _scale(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = images.reshape((len(images), *shape)).astype(np.float32)
    out /= np.float32(255.0)
    return out


def _uncached_hog(images: np.ndarray, p: int, o: int, key: str) -> np.ndarray:
    from labreport.train import features

    return features.hog_batch(images, p, o)


def one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[np.asarray(y, dtype=np.int64)]


# --------------------------------------------------------------------------- results


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions(spec: ExperimentSpec | None = None, *, with_tf: bool = True) -> dict[str, str | None]:
    from labreport import __version__

    out: dict[str, str | None] = {
        "labreport": __version__,
        "engine": engine_version(spec) if spec is not None else ENGINE_VERSION,
        "python": platform.python_version(),
        "tensorflow": None,
        "keras": None,
        "numpy": np.__version__,
    }
    if with_tf:
        try:
            import keras
            import tensorflow as tf
        except ImportError:
            return out
        out["tensorflow"] = tf.__version__
        out["keras"] = keras.__version__
    return out


def base_result(
    spec: ExperimentSpec,
    *,
    status: str,
    quick: bool,
    cache_key: str,
    error: str | None = None,
    dataset: Any = None,
) -> dict[str, Any]:
    """Every key of docs/results.md with empty measurements; failures store exactly this.

    Pure (no TensorFlow): the runner uses it for experiments that fail before training.
    """
    return {
        "name": spec.name,
        "repeat": spec.repeat,  # which run of the experiment (repeats): its folder under build/runs/NAME/
        "part": spec.part,
        "status": status,
        "error": error,
        "quick": quick,
        "spec": spec.as_dict(),
        "cache_key": cache_key,
        "data": {
            "dataset": spec.dataset,
            "sha256": getattr(dataset, "sha256", None),
            "source": getattr(dataset, "source", None),
            "n_train": None,  # known once the inputs are prepared
            "n_test": None,
        },
        "class_names": list(spec.class_names),
        "metrics": {},
        "history": {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []},
        "confusion": [],
        "per_class": [],
        "confused_pairs": [],
        "params": {**param_counts.breakdown(spec).as_dict(), "keras_total": None},
        "duration_s": 0.0,
        "epoch_s": None,
        "started_at": None,
        "finished_at": None,
        "versions": versions(spec, with_tf=False),
        "host": {"cpus": os.cpu_count(), "threads": None},
        "fused": None,  # how it was trained when fused with other runs (fusion.train_group)
    }


def clean_history(history: Mapping[str, list]) -> dict[str, list[float | None]]:
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [finite(v) for v in history.get(k, [])] for k in keys}


def curve_metrics(history: dict[str, list[float | None]]) -> dict[str, Any]:
    """Last-epoch numbers + metrics.learning_curve_facts (on the epochs before any NaN)."""
    last = {k: (v[-1] if v else None) for k, v in history.items()}
    return {
        "test_loss": last["val_loss"],
        "test_accuracy": last["val_accuracy"],
        "train_loss": last["loss"],
        "train_accuracy": last["accuracy"],
        **metrics.learning_curve_facts(history),
    }


# --------------------------------------------------------------------------- training


class EpochClock:
    """Wall seconds of each epoch and since fit began: the timing of both epoch callbacks
    (this module's and ``fusion``'s)."""

    def __init__(self) -> None:
        self.epoch_s: list[float] = []
        self._fit_start = self._epoch_start = time.perf_counter()

    def begin(self) -> None:
        self._epoch_start = time.perf_counter()

    def end(self) -> tuple[float, float]:
        """Record the epoch that just ended; (its seconds, seconds since fit began)."""
        now = time.perf_counter()
        self.epoch_s.append(now - self._epoch_start)
        return self.epoch_s[-1], now - self._fit_start


def epoch_info(epoch: int, epochs: int, numbers: Mapping[str, Any], timing: tuple[float, float]) -> EpochInfo:
    """The EpochInfo of 0-based Keras ``epoch`` from its loss, accuracy, val_loss and val_accuracy
    (missing or non-finite: None) and ``EpochClock.end``'s timing."""
    return EpochInfo(epoch=epoch + 1, epochs=epochs,
                     **{key: finite(numbers.get(key)) for key in ("loss", "accuracy", "val_loss", "val_accuracy")},
                     epoch_s=timing[0], elapsed_s=timing[1])


def _epoch_callback(epochs: int, on_epoch: Callable[[EpochInfo], object] | None, log: Log):
    """A Keras callback: epoch timing, progress, and TerminateOnNaN that keeps the history."""
    import keras

    class EpochWatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.clock = EpochClock()
            self.epoch_s = self.clock.epoch_s
            # Our own copy of the epoch logs: it survives an exception in the middle of fit.
            self.history: dict[str, list] = {}
            self.diverged_epoch: int | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.clock.begin()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            timing = self.clock.end()
            logs = logs or {}
            for key, value in logs.items():
                self.history.setdefault(key, []).append(value)
            info = epoch_info(epoch, epochs, logs, timing)
            log(_epoch_line(info))
            if on_epoch is not None:
                on_epoch(info)
            # The epoch loss is the running mean of the batch losses: one NaN/inf batch
            # makes it non-finite, so checking once per epoch catches every divergence
            # without a device sync per batch (TerminateOnNaN's cost).
            if info.loss is None:
                self.diverged_epoch = epoch + 1
                self.model.stop_training = True

    return EpochWatch()


def _epoch_line(info: EpochInfo) -> str:
    def f(v: float | None) -> str:
        return "nan" if v is None else f"{v:.4f}"

    return (f"epoch {info.epoch}/{info.epochs}  loss {f(info.loss)}  acc {f(info.accuracy)}  "
            f"test loss {f(info.val_loss)}  test acc {f(info.val_accuracy)}  {info.epoch_s:.2f} s")


def steps_per_execution(n_train: int, batch_size: int) -> int:
    """Training steps per graph call (identical numbers either way; see the constants)."""
    steps = max(1, math.ceil(n_train / batch_size))
    return min(steps, MAX_STEPS_PER_EXECUTION) if steps >= MIN_STEPS_FOR_MULTI_STEP else 1


def validation_batch(batch_size: int) -> int:
    return max(batch_size, MIN_VALIDATION_BATCH)


def train_and_evaluate(
    spec: ExperimentSpec,
    dataset: Any,
    *,
    hog_features: HogFeatures | None = None,
    quick: bool = False,
    quick_cfg: QuickConfig | None = None,
    cache_key: str = "",
    threads: tuple[int, int] | None = None,
    log: Log | None = None,
    on_epoch: Callable[[EpochInfo], object] | None = None,
) -> dict[str, Any]:
    """Train ``spec`` on ``dataset`` and return its full result dict (status ok/diverged/failed).

    An exception during preparation or training is caught, its traceback sent to
    ``log``, and returned as status ``failed`` with the epochs that did run;
    KeyboardInterrupt propagates. ``threads`` = (intra-op, inter-op) applies if this is
    the process's first use of TensorFlow (TF fixes its pools then).
    """
    log = log or (lambda _line: None)
    quick_cfg = (quick_cfg or QuickConfig.from_env()) if quick else None
    result = base_result(spec, status="failed", quick=quick, cache_key=cache_key, dataset=dataset)
    result["started_at"] = utc_now()
    start = time.perf_counter()
    watch = None
    try:
        if threads:
            configure_threads(*threads)
        tensorflow()
        _log_startup_lines(log)
        inputs = prepare_inputs(spec, dataset, hog_features=hog_features, quick_cfg=quick_cfg)
        result["data"].update(n_train=len(inputs.y_train), n_test=len(inputs.y_test))
        log(f"data: {spec.dataset} ({getattr(dataset, 'source', '?')}, sha256 {result['data']['sha256']}); "
            f"{inputs.description}")
        epochs = min(spec.epochs, quick_cfg.epochs) if quick_cfg else spec.epochs
        watch = _epoch_callback(epochs, on_epoch, log)
        start = time.perf_counter()
        model = _fit(spec, inputs, epochs, watch, result, log)
        if watch.diverged_epoch is None:
            y_pred = model.predict(inputs.x_test, batch_size=validation_batch(spec.batch_size),
                                   verbose=0).argmax(axis=1)
            result.update(_prediction_metrics(spec, inputs.y_test, y_pred))
            result["status"] = "ok"
        else:
            result["status"] = "diverged"
            result["error"] = f"the training loss became NaN or infinite at epoch {watch.diverged_epoch}"
            result["metrics"] = {"diverged_epoch": watch.diverged_epoch}
    except Exception as exc:  # noqa: BLE001 - a failed experiment must not stop the others
        _log_startup_lines(log)  # e.g. why the TensorFlow import failed
        log(traceback.format_exc().rstrip())
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    history = clean_history(watch.history if watch is not None else {})
    result["history"] = history
    if history["loss"]:
        result["metrics"] = {**curve_metrics(history), **result["metrics"]}
    result["duration_s"] = round(time.perf_counter() - start, 3)
    result["epoch_s"] = round(float(np.mean(watch.epoch_s)), 4) if watch is not None and watch.epoch_s else None
    result["finished_at"] = utc_now()
    tf_loaded = "tensorflow" in sys.modules  # not if the import itself failed
    result["versions"] = versions(spec, with_tf=tf_loaded)
    result["host"] = {"cpus": os.cpu_count(), "threads": thread_settings() if tf_loaded else None}
    log(f"{result['status']}" + (f": {result['error']}" if result["error"] else "")
        + f" ({result['duration_s']:.1f} s)")
    return result


def _log_startup_lines(log: Log) -> None:
    for line in take_startup_lines():
        log(f"library start-up: {line}")


def _fit(spec: ExperimentSpec, inputs: Inputs, epochs: int, watch: Any, result: dict, log: Log):
    """Build, compile and fit exactly like the lab; returns the trained model."""
    tensorflow()
    import keras

    from labreport.train import models

    keras.backend.clear_session()  # a worker trains many models: drop the previous graphs
    keras.utils.set_random_seed(spec.seed)
    model = models.build(spec, inputs.x_train.shape[1] if inputs.x_train.ndim == 2 else None)
    result["params"]["keras_total"] = int(model.count_params())
    spe = steps_per_execution(len(inputs.y_train), spec.batch_size)
    model.compile(
        optimizer=models.optimizer(spec),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA made training 3-7x slower on these CPUs
        steps_per_execution=spe,
    )
    log(f"model: {param_counts.breakdown(spec).topology}, {model.count_params():,} parameters; "
        f"fit batch {spec.batch_size}, {epochs} epochs, steps_per_execution {spe}, "
        f"validation batch {validation_batch(spec.batch_size)}")
    model.fit(
        inputs.x_train, one_hot(inputs.y_train),
        batch_size=spec.batch_size,
        epochs=epochs,
        validation_data=(inputs.x_test, one_hot(inputs.y_test)),
        validation_batch_size=validation_batch(spec.batch_size),
        verbose=0,
        callbacks=[watch],
    )
    return model


def _prediction_metrics(spec: ExperimentSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    m = metrics.classification_metrics(y_true, y_pred, list(spec.class_names))
    return {
        "metrics": {"macro_f1": m["macro_f1"]},
        "confusion": m["confusion"],
        "per_class": m["per_class"],
        "confused_pairs": m["confused_pairs"],
    }
