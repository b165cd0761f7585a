"""Train K runs that share data, inputs, batch size, epochs and optimizer as ONE Keras model.

The fused model has K independent branches (each exactly ``models.build`` of its own
spec, its weights drawn from its own seed as ``engine`` draws them) and the sum of the K
losses. The gradient of the sum with respect to branch k's weights is branch k's own
gradient, and every optimizer the lab offers (RMSprop, Adam, SGD) updates each weight
from that weight's gradient only, so each branch trains as it would alone. What differs
from K separate fits: one optimizer step counter for all (the same value), and the random
draws of the data order and the dropout masks.

The data order is each branch's own: a new permutation per epoch drawn from the branch's
seed, so the branches of one fused group see independent orders, as K
separate runs would. (Sharing one order would make the repeats of an experiment agree
more than separate runs do, and shrink the spread between seeds that repeats measure.)

Failure isolation: a branch whose epoch loss is NaN/inf is marked diverged at that epoch,
exactly as ``engine`` marks one model; its NaN cannot reach the other branches' weights
(no shared weight, no gradient clipping across variables), the summed loss that Keras
logs is never looked at, and fit goes on for the others (it stops when every branch has
diverged). Each run gets the result dict ``engine.train_and_evaluate`` returns, its own
history, metrics and confusion matrix, plus ``"fused"`` (how it was trained: not part of
the cache key, it does not change what a run computes).

TensorFlow is imported inside the functions only (``groups``/``fusion_key`` are pure).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from labreport.config import param_counts
from labreport.config.spec import ExperimentSpec
from labreport.train import engine
from labreport.train.engine import EpochInfo, HogFeatures, Log, QuickConfig

T = TypeVar("T")
LOSS_METRIC = "xent"  # each branch's training loss as engine reports it (see _fit)

ENV_VAR = "LABREPORT_FUSION"
# The families where fusion pays, decided from python -m bench.bench_fusion (2 cores, shared,
# 2026-11-26; K = 3 repeats, wall seconds per epoch of the 3 runs, separate / fused):
#   --jobs 2 (the default then), 60,000 images, two rounds: mlp raw 1.04x, 1.11x (whole fits 1.26x,
#   1.32x); mlp hog 1.28x, 1.20x (whole fits 1.0x, 1.10x); cnn 1.08x (whole fits 0.68x);
#   cnn fashion 0.61x (whole fits 0.87x). --jobs 1, 30,000 images: 1.18x, 1.24x, 1.05x, 1.43x.
# Sweeps at --jobs 2 (K = 2 to 4 different MLPs of one input): 1.22x, 0.91x, 0.91x, 1.44x.
# The repeats of an MLP gain in every measurement; so the runner fuses those (plan); the
# CNNs lose at --jobs 2 (their whole fits are slower fused) and train one by one.
FUSED_FAMILIES = frozenset({"mlp raw", "mlp hog"})
# What the estimate expects fusion to save there (runner.fuse_tasks): the HOG family's runs 2-3
# (16 runs, --jobs 2, quiet machine) took 5m18s fused against 5m54s one by one (1.11x); raw
# measured 1.04x and 1.11x per epoch. Counting no gain made that run's first figure +31 %.
# At --jobs 3 (the default then): the same 16 runs 4m30s and 4m52s fused, 5m17s and 5m22s
# one by one (1.17x, 1.10x; quiet machine, 2026-11-26).
FUSED_SPEEDUP = 1.1

# Beyond this many branches a group is split: the fused model holds K x the activations
# of one batch (the Fashion CNN at batch 16,382 has ~115 MB per conv layer and branch),
# and the measured gain does not grow past a few branches.
MAX_BRANCHES = 8


def fusion_key(spec: ExperimentSpec) -> tuple:
    """What runs must share to be trained as one model: the same input tensor fed the same
    way (data set, features, image or vector), the same batches, epochs and optimizer."""
    return (spec.dataset, spec.hog, bool(spec.conv), spec.batch_size, spec.epochs, spec.optimizer)


def groups(specs: Sequence[ExperimentSpec], max_branches: int = MAX_BRANCHES) -> list[tuple[ExperimentSpec, ...]]:
    """``specs`` partitioned by ``fusion_key`` in first-seen order, each part cut into chunks
    of at most ``max_branches`` of near-equal size (a group of one is trained as today)."""
    return [tuple(specs[i] for i in part) for part in _partition(list(specs), max_branches, fusion_key)]


def _partition(specs: list[ExperimentSpec], max_branches: int,
               key: Callable[[ExperimentSpec], tuple]) -> list[list[int]]:
    by_key: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):
        by_key.setdefault(key(s), []).append(i)
    out: list[list[int]] = []
    for members in by_key.values():
        n_chunks = math.ceil(len(members) / max(1, max_branches))
        size, extra = divmod(len(members), n_chunks)
        start = 0
        for c in range(n_chunks):
            stop = start + size + (c < extra)
            out.append(members[start:stop])
            start = stop
    return out


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``LABREPORT_FUSION`` is 0/false/no/off: the escape hatch, every run alone.
    Unset or empty: on. Any other value raises env.EnvError (the CLI checks it up front)."""
    from labreport import env as env_vars

    environ = os.environ if environ is None else environ
    if not environ.get(ENV_VAR, "").strip():
        return True
    return bool(env_vars.get(ENV_VAR, True, environ))


def pays(spec: ExperimentSpec) -> bool:
    """Whether fusion was measured to pay for this spec's family (``FUSED_FAMILIES``)."""
    from labreport.train import eta

    return eta.family(spec) in FUSED_FAMILIES


def plan(items: Sequence[T], spec_of: Callable[[T], ExperimentSpec], jobs: int,
         max_branches: int = MAX_BRANCHES, worth: Callable[[ExperimentSpec], bool] | None = None,
         ) -> list[tuple[T, ...]]:
    """``items`` (runs, in the caller's order) as units of work: the repeats of one experiment
    as a fused group where fusion pays (``pays``), single runs elsewhere; in the order of
    each unit's first item. Sweeps (different experiments of one ``fusion_key``) are not
    fused: measured, they gained in two cases of four and lost in two (``FUSED_FAMILIES``).

    Never fewer units than ``jobs`` while a group can still be split: one fused group on
    one worker would leave the other cores idle, and two runs side by side on two cores
    beat them fused on one (bench_fusion, --jobs 1 fused vs --jobs 2 separate). ``worth``
    replaces :func:`pays` (tests).
    """
    worth = worth or pays
    specs = [spec_of(item) for item in items]
    fusable = [i for i, s in enumerate(specs) if worth(s)]
    same_experiment = lambda s: (fusion_key(s), s.name)  # noqa: E731 - repeats only
    units = [[fusable[j] for j in part]
             for part in _partition([specs[i] for i in fusable], max_branches, same_experiment)]
    units += [[i] for i, s in enumerate(specs) if not worth(s)]
    while len(units) < jobs:
        largest = max(units, key=len)
        if len(largest) < 2:
            break
        units.remove(largest)
        half = (len(largest) + 1) // 2
        units += [largest[:half], largest[half:]]
    units.sort(key=lambda u: u[0])
    return [tuple(items[i] for i in u) for u in units]


def branch_name(k: int) -> str:
    """Branch k's Keras name: its sub-model, its output and the keys of its logs."""
    return f"branch{k}"


def input_name(k: int) -> str:
    return f"input{k}"


def train_group(
    specs: Sequence[ExperimentSpec],
    dataset: Any,
    *,
    hog_features: HogFeatures | None = None,
    quick: bool = False,
    quick_cfg: QuickConfig | None = None,
    cache_keys: Sequence[str] | None = None,
    threads: tuple[int, int] | None = None,
    logs: Sequence[Log] | None = None,
    on_epochs: Sequence[Callable[[EpochInfo], object] | None] | None = None,
    build: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``specs`` as one fused model; one result dict per spec, in order, each in
    ``engine.train_and_evaluate``'s format (status ok/diverged/failed).

    ``logs``/``on_epochs``/``cache_keys``: one per spec (its run.log, its progress, its
    key). Lines about the group go to every log. An exception fails every run of the
    group (its traceback in every log); KeyboardInterrupt propagates. ``build`` replaces
    ``models.build`` (same signature; tests inject a faulty branch through it).
    """
    specs = list(specs)
    k_runs = len(specs)
    if not specs:
        return []
    if len({fusion_key(s) for s in specs}) != 1:
        raise ValueError("fusion.train_group: the runs do not share data, inputs, batch size, epochs and optimizer: "
                         + ", ".join(s.name for s in specs))
    logs = list(logs) if logs is not None else [lambda _line: None] * k_runs
    on_epochs = list(on_epochs) if on_epochs is not None else [None] * k_runs
    cache_keys = list(cache_keys) if cache_keys is not None else [""] * k_runs

    def log_all(line: str) -> None:
        for log in logs:
            log(line)

    quick_cfg = (quick_cfg or QuickConfig.from_env()) if quick else None
    results = [engine.base_result(s, status="failed", quick=quick, cache_key=key, dataset=dataset)
               for s, key in zip(specs, cache_keys)]
    started_at = engine.utc_now()
    start = time.perf_counter()
    watch = None
    model = None
    inputs = None
    try:
        if threads:
            engine.configure_threads(*threads)
        engine.tensorflow()
        for line in engine.take_startup_lines():
            log_all(f"library start-up: {line}")
        spec0 = specs[0]
        inputs = engine.prepare_inputs(spec0, dataset, hog_features=hog_features, quick_cfg=quick_cfg)
        for r in results:
            r["data"].update(n_train=len(inputs.y_train), n_test=len(inputs.y_test))
        log_all(f"data: {spec0.dataset} ({getattr(dataset, 'source', '?')}, sha256 {results[0]['data']['sha256']}); "
                f"{inputs.description}")
        epochs = min(spec0.epochs, quick_cfg.epochs) if quick_cfg else spec0.epochs
        watch = _group_callback(specs, epochs, logs, on_epochs)
        start = time.perf_counter()
        model = _fit(specs, inputs, epochs, watch, results, logs, build)
        y_pred_by_branch = None
        if any(d is None for d in watch.diverged_epoch):
            x_test = {input_name(k): inputs.x_test for k in range(k_runs)}
            predicted = model.predict(x_test, batch_size=engine.validation_batch(spec0.batch_size), verbose=0)
            y_pred_by_branch = {name: np.asarray(p).argmax(axis=1) for name, p in predicted.items()}
        for k, (spec, result) in enumerate(zip(specs, results)):
            diverged = watch.diverged_epoch[k]
            if diverged is None:
                result.update(engine._prediction_metrics(spec, inputs.y_test, y_pred_by_branch[branch_name(k)]))
                result["status"] = "ok"
            else:
                result["status"] = "diverged"
                result["error"] = f"the training loss became NaN or infinite at epoch {diverged}"
                result["metrics"] = {"diverged_epoch": diverged}
    except Exception as exc:  # noqa: BLE001 - a failed group must not stop the other experiments
        for line in engine.take_startup_lines():
            log_all(f"library start-up: {line}")
        log_all(traceback.format_exc().rstrip())
        for r in results:
            r["status"] = "failed"
            r["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    group_s = time.perf_counter() - start
    group_epoch_s = float(np.mean(watch.epoch_s)) if watch is not None and watch.epoch_s else None
    finished_at = engine.utc_now()
    tf_loaded = "tensorflow" in sys.modules
    host = {"cpus": os.cpu_count(), "threads": engine.thread_settings() if tf_loaded else None}
    for k, (result, log) in enumerate(zip(results, logs)):
        history = engine.clean_history(watch.history[k] if watch is not None else {})
        result["history"] = history
        if history["loss"]:
            result["metrics"] = {**engine.curve_metrics(history), **result["metrics"]}
        # A run's duration is its share of the group's: the report sums durations into the
        # lab's training time, and the ETA learns seconds per epoch per model from them.
        result["duration_s"] = round(group_s / k_runs, 3)
        result["epoch_s"] = round(group_epoch_s / k_runs, 4) if group_epoch_s is not None else None
        result["fused"] = {
            "branches": k_runs,
            "branch": k + 1,
            "runs": [_run_key(s) for s in specs],
            "duration_s": round(group_s, 3),
            "epoch_s": round(group_epoch_s, 4) if group_epoch_s is not None else None,
        }
        result["started_at"], result["finished_at"] = started_at, finished_at
        result["versions"], result["host"] = engine.versions(specs[k], with_tf=tf_loaded), host
        log(f"{result['status']}" + (f": {result['error']}" if result["error"] else "")
            + f" (fused group of {k_runs}: {group_s:.1f} s, this run's share {result['duration_s']:.1f} s)")
    return results


def _run_key(spec: ExperimentSpec) -> str:
    # ``run_key`` arrives with repeats (spec.repeat); the experiment's name before that.
    return getattr(spec, "run_key", spec.name)


# --------------------------------------------------------------------------- Keras


def _group_callback(specs: Sequence[ExperimentSpec], epochs: int, run_logs: Sequence[Log],
                    on_epochs: Sequence[Callable[[EpochInfo], object] | None]):
    """Per-branch epoch logs, progress and divergence; stops fit only when all diverged."""
    import keras

    names = [branch_name(k) for k in range(len(specs))]

    class GroupWatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.clock = engine.EpochClock()
            self.epoch_s = self.clock.epoch_s
            self.history: list[dict[str, list]] = [{} for _ in names]
            self.diverged_epoch: list[int | None] = [None] * len(names)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.clock.begin()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            timing = self.clock.end()
            logs = logs or {}
            for k, name in enumerate(names):
                if self.diverged_epoch[k] is not None:
                    continue  # its later epochs are NaN computed for nothing: not its history
                # Keras names a branch's numbers "<branch>_xent", "val_<branch>_xent"...; with
                # one branch only, plain "xent".
                own_key = (lambda key: key) if len(names) == 1 else (lambda key, name=name: f"{name}_{key}")
                own = {"loss": logs.get(own_key(LOSS_METRIC)), "accuracy": logs.get(own_key("accuracy")),
                       "val_loss": logs.get(f"val_{own_key(LOSS_METRIC)}"),
                       "val_accuracy": logs.get(f"val_{own_key('accuracy')}")}
                for key, value in own.items():
                    self.history[k].setdefault(key, []).append(value)
                info = engine.epoch_info(epoch, epochs, own, timing)
                run_logs[k](engine._epoch_line(info))
                if on_epochs[k] is not None:
                    on_epochs[k](info)
                if info.loss is None:  # as engine: the epoch loss is the mean of the batch losses
                    self.diverged_epoch[k] = epoch + 1
                    if len(names) > 1:
                        run_logs[k]("this branch diverged; the other branches of the fused model train on")
            if all(d is not None for d in self.diverged_epoch):
                self.model.stop_training = True

    return GroupWatch()


def _fit(specs: Sequence[ExperimentSpec], inputs: engine.Inputs, epochs: int, watch: Any,
         results: list[dict], logs: Sequence[Log], build: Callable[..., Any] | None = None):
    """Build the K branches (each seeded as engine seeds one model), compile with the summed
    loss, fit on each branch's own data order; returns the fused model."""
    engine.tensorflow()
    import keras

    from labreport.train import models

    build = build or models.build
    spec0 = specs[0]
    names = [branch_name(k) for k in range(len(specs))]
    keras.backend.clear_session()
    n_inputs = inputs.x_train.shape[1] if inputs.x_train.ndim == 2 else None
    branches = []
    for spec, name, result in zip(specs, names, results):
        # Exactly engine._fit's draws: the initialisers take their seeds from Python's
        # random, reset here by the branch's seed, in the same layer order.
        keras.utils.set_random_seed(spec.seed)
        branch = build(spec, n_inputs, name=name)
        result["params"]["keras_total"] = int(branch.count_params())
        branches.append(branch)
    feeds = [keras.Input(shape=inputs.x_train.shape[1:], name=input_name(k)) for k in range(len(specs))]
    model = keras.Model({input_name(k): feed for k, feed in enumerate(feeds)},
                        {name: branch(feed) for name, branch, feed in zip(names, branches, feeds)}, name="fused")
    spe = engine.steps_per_execution(len(inputs.y_train), spec0.batch_size)
    model.compile(
        optimizer=models.optimizer(spec0),  # per-weight updates: each branch's own optimizer, in effect
        loss={name: "categorical_crossentropy" for name in names},  # summed, weight 1 each
        # Keras averages a branch's own loss over batches, each batch counting once; a model's
        # "loss" weighs each batch by its size. This metric is the same cross-entropy, weighed
        # by size: the number engine reports for one model (partial last batches included).
        metrics={name: ["accuracy", keras.metrics.CategoricalCrossentropy(name=LOSS_METRIC)] for name in names},
        jit_compile=False,
        steps_per_execution=spe,
    )
    for spec, branch, log in zip(specs, branches, logs):
        log(f"model: {param_counts.breakdown(spec).topology}, {branch.count_params():,} parameters; "
            f"fit batch {spec.batch_size}, {epochs} epochs, steps_per_execution {spe}, "
            f"validation batch {engine.validation_batch(spec.batch_size)}; fused: one Keras model of "
            f"{len(specs)} branches ({', '.join(_run_key(s) for s in specs)}), each with its own seed and data order")
    y_test = engine.one_hot(inputs.y_test)
    model.fit(
        training_batches([s.seed for s in specs], inputs.x_train, engine.one_hot(inputs.y_train),
                         spec0.batch_size),
        epochs=epochs,
        shuffle=False,  # the batches come in each branch's own order already
        validation_data=({input_name(k): inputs.x_test for k in range(len(specs))},
                         {name: y_test for name in names}),
        validation_batch_size=engine.validation_batch(spec0.batch_size),
        verbose=0,
        callbacks=[watch],
    )
    return model


def epoch_order(seed: int, key, n: int):
    """A branch's data order in one epoch: the permutation of range(n) drawn from (seed, key)
    alone, ``key`` being the epoch's draw from ``epoch_keys``; independent of the other
    branches and of any other state."""
    tf = engine.tensorflow()
    return tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32), seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(key, tf.int64)]))


# Dataset.random mixes TensorFlow's global seed into its stream. _fit seeds the global state
# with each branch's seed in turn (keras.utils.set_random_seed), so without a fixed global seed
# every branch's data order would depend on the last branch of its group: a run fused with
# runs 2-3 and the same run fused with run 2 only would see other orders (measured on a quick
# run: 79.2 % against 77.9 %).
EPOCH_KEYS_GLOBAL_SEED = 20261126


def epoch_keys(seed: int):
    """One random int64 per pass over the data set, a new one on each pass (Keras starts a new
    pass every epoch), the sequence fixed by ``seed`` alone (not by the group, nor by TensorFlow's
    global seed: it is pinned here, and is reset by the next model's set_random_seed anyway)."""
    tf = engine.tensorflow()
    tf.random.set_seed(EPOCH_KEYS_GLOBAL_SEED)
    return tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True).take(1)


def training_batches(seeds: Sequence[int], x: np.ndarray, y: np.ndarray, batch_size: int):
    """A tf.data pipeline of ONE epoch, ceil(n / batch_size) batches ({input_name(k): x rows},
    {branch_name(k): y rows}), branch k's rows in its own order (``epoch_order`` of seeds[k]),
    the last batch partial. Each pass draws new orders (``epoch_keys``).

    One epoch per pass, as Keras' own array pipeline: with several steps per execution
    Keras runs a graph call until it has its steps or the data ends, so only the end of
    the data can end an epoch where the epoch ends. The same vectorised shape as that
    pipeline (a permutation per epoch, sliced into index batches, a parallel gather), K times.
    """
    tf = engine.tensorflow()

    n = len(x)
    n_full = n // batch_size
    rest = n - n_full * batch_size
    x_t, y_t = tf.constant(x), tf.constant(y)

    def index_batches(seed: int):
        def batches(perm):
            out = tf.data.Dataset.from_tensor_slices(tf.reshape(perm[:n_full * batch_size], [n_full, batch_size]))
            if rest:
                out = out.concatenate(tf.data.Dataset.from_tensors(perm[n_full * batch_size:]))
            return out

        return epoch_keys(seed).map(lambda key: epoch_order(seed, key, n)).flat_map(batches)

    def gather(*idx):
        return ({input_name(k): tf.gather(x_t, i) for k, i in enumerate(idx)},
                {branch_name(k): tf.gather(y_t, i) for k, i in enumerate(idx)})

    ds = tf.data.Dataset.zip(tuple(index_batches(int(s)) for s in seeds)).map(
        gather, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_full + (1 if rest else 0)))
    options = engine.data_options()  # no autotuning thread (see there)
    options.experimental_optimization.apply_default_optimizations = False  # as Keras' own pipeline
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
