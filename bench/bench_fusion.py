"""Fused vs separate training of the experiments of a lab that could share one Keras model.

Experiments with the same data set, inputs, batch size, epochs and optimizer can be trained
as one model: K independent branches on one input, the K losses summed. Each branch gets
exactly its own gradient, and RMSprop's update is per weight, so each trains as it would
alone (up to dropout masks and the order of random draws). Two ways are timed:

- ``branches``: the K Keras models side by side in one graph (one fit, K outputs);
- ``grouped`` (``--grouped``): CNNs with identical conv stacks only: the K first
  convolutions as one Conv2D with K x filters on the shared image, the next ones as
  grouped convolutions (``groups=K``), then each branch's slice of channels to its own
  dense head: fewer, bigger kernels. Measured on TensorFlow's CPU build (2026-11-25): the
  six lab CNNs, 2 epochs on 5,000 images, had used > 100 CPU s and not finished where
  one by one took 9.6 CPU s, so it is off by default.

    python -m bench.bench_fusion                 # every group of the default lab, 2 epochs, 15,000 images
    python -m bench.bench_fusion --train 5000 --family cnn    # smaller, one family

Prints one row per group: separate seconds (K fits one after the other, the engine's
settings), fused seconds, and the ratio, by the clock and in process CPU seconds.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labreport.config import loader  # noqa: E402
from labreport.config.spec import ExperimentSpec  # noqa: E402

BUILD = ROOT / "build"


def fusion_key(spec: ExperimentSpec) -> tuple:
    """What experiments must share to be trained as one model."""
    return (spec.dataset, spec.hog, bool(spec.conv), spec.batch_size, spec.epochs, spec.optimizer, spec.seed)


def groups(specs: list[ExperimentSpec]) -> list[list[ExperimentSpec]]:
    """The lab's fusable groups of two or more experiments, in config order."""
    by_key: dict[tuple, list[ExperimentSpec]] = {}
    for s in specs:
        by_key.setdefault(fusion_key(s), []).append(s)
    return [g for g in by_key.values() if len(g) > 1]


def _compile(model, spec: ExperimentSpec, n_train: int, n_outputs: int = 1):
    from labreport.train import engine, models

    loss = ["categorical_crossentropy"] * n_outputs if n_outputs > 1 else "categorical_crossentropy"
    metrics = [["accuracy"]] * n_outputs if n_outputs > 1 else ["accuracy"]
    model.compile(optimizer=models.optimizer(spec), loss=loss, metrics=metrics, jit_compile=False,
                  steps_per_execution=engine.steps_per_execution(n_train, spec.batch_size))
    return model


def branches_model(specs: list[ExperimentSpec], n_inputs: int | None):
    import keras

    from labreport.train import models

    first = models.build(specs[0], n_inputs)
    inp = keras.Input(shape=first.input_shape[1:])
    outs = [models.build(s, n_inputs)(inp) for s in specs]
    return keras.Model(inp, outs)


def grouped_model(specs: list[ExperimentSpec]):
    """CNN branches with identical conv stacks: one conv per layer for all branches."""
    import keras

    conv = specs[0].conv
    k = len(specs)
    inp = keras.Input(shape=(28, 28, 1))
    x = inp
    for i, c in enumerate(conv):
        x = keras.layers.Conv2D(c.filters * k, c.kernel, padding=c.padding, activation=c.activation,
                                groups=1 if i == 0 else k)(x)
        if c.pool > 1:
            x = keras.layers.MaxPooling2D(c.pool)(x)
    f = conv[-1].filters
    outs = []
    for j, s in enumerate(specs):
        h = keras.layers.Lambda(lambda t, j=j: t[..., j * f:(j + 1) * f])(x)
        h = keras.layers.Flatten()(h)
        for units in s.hidden:
            h = keras.layers.Dense(units, activation=s.activation)(h)
            if s.dropout > 0:
                h = keras.layers.Dropout(s.dropout)(h)
        outs.append(keras.layers.Dense(10, activation="softmax")(h))
    return keras.Model(inp, outs)


def _fit(model, spec: ExperimentSpec, inputs, y_train, y_test, n_outputs: int, epochs: int) -> float:
    from labreport.train import engine

    ys = [y_train] * n_outputs if n_outputs > 1 else y_train
    yt = [y_test] * n_outputs if n_outputs > 1 else y_test
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(inputs.x_train, ys, batch_size=spec.batch_size, epochs=epochs,
              validation_data=(inputs.x_test, yt), validation_batch_size=engine.validation_batch(spec.batch_size),
              verbose=0)
    return np.array([time.perf_counter() - t0, time.process_time() - c0])


def bench_group(specs: list[ExperimentSpec], dataset, hog, n_train: int, n_test: int, epochs: int,
                grouped_conv: bool = True) -> dict:
    import keras

    from labreport.train import engine, models

    cfg = engine.QuickConfig(epochs=epochs, n_train=n_train, n_test=n_test)
    inputs = engine.prepare_inputs(specs[0], dataset, hog_features=hog, quick_cfg=cfg)
    n_inputs = inputs.x_train.shape[1] if inputs.x_train.ndim == 2 else None
    y_train, y_test = engine.one_hot(inputs.y_train), engine.one_hot(inputs.y_test)
    spec = specs[0]

    separate = np.zeros(2)
    for s in specs:
        keras.backend.clear_session()
        keras.utils.set_random_seed(s.seed)
        separate += _fit(_compile(models.build(s, n_inputs), s, n_train), s, inputs, y_train, y_test, 1, epochs)
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    fused = _fit(_compile(branches_model(specs, n_inputs), spec, n_train, len(specs)), spec, inputs,
                 y_train, y_test, len(specs), epochs)
    print(f"  {spec.name}..: separate {separate[0]:.1f} s ({separate[1]:.1f} cpu s),"
          f" fused {fused[0]:.1f} s ({fused[1]:.1f} cpu s)", flush=True)
    grouped = None
    if grouped_conv and spec.conv and all(s.conv == spec.conv for s in specs):
        keras.backend.clear_session()
        keras.utils.set_random_seed(spec.seed)
        try:
            grouped = _fit(_compile(grouped_model(specs), spec, n_train, len(specs)), spec, inputs,
                           y_train, y_test, len(specs), epochs)
        except Exception as exc:  # noqa: BLE001 - e.g. grouped convolutions unsupported on this CPU build
            print(f"  grouped convolutions failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    return {"separate": separate, "fused": fused, "grouped": grouped}


def family_of(spec: ExperimentSpec) -> str:
    from labreport.train import eta

    return eta.family(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_fusion", description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=15_000)
    ap.add_argument("--test", type=int, default=2_500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--family", action="append", help="only these families (mlp raw, mlp hog, cnn, cnn fashion)")
    ap.add_argument("--grouped", action="store_true",
                    help="also time grouped convolutions (measured > 10x slower than separate on TF's CPU build)")
    ap.add_argument("--no-grouped", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("-c", "--config", type=Path, default=ROOT / "experiments.toml")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from labreport.train import datasets, engine, features

    engine.tensorflow()
    lab = loader.load(args.config)
    hog = lambda imgs, p, o, key: features.cached_hog(imgs, p, o, cache_dir=BUILD / "features", key=key)  # noqa: E731
    print(f"fused vs separate: {args.epochs} epochs on {args.train:,} train / {args.test:,} test images, "
          f"one process, TensorFlow's default threads; load average {os.getloadavg()[0]:.1f}", flush=True)
    header = ["family", "group (batch, epochs)", "K", "separate s (cpu s)", "fused s (cpu s)", "ratio (cpu)",
              "grouped-conv s (cpu s)", "ratio (cpu)"]
    rows = []

    def pair(v) -> str:
        return f"{v[0]:.1f} ({v[1]:.1f})"

    def ratio(a, b) -> str:
        return f"{a[0] / b[0]:.2f}x ({a[1] / b[1]:.2f}x)"

    for g in groups(list(lab.experiments)):
        if args.family and family_of(g[0]) not in args.family:
            continue
        ds = datasets.load(g[0].dataset, data_dir=BUILD / "data")
        r = bench_group(g, ds, hog, args.train, args.test, args.epochs, grouped_conv=args.grouped and not args.no_grouped)
        row = [family_of(g[0]), f"{g[0].name}.. (bs {g[0].batch_size}, ep {g[0].epochs})", str(len(g)),
               pair(r["separate"]), pair(r["fused"]), ratio(r["separate"], r["fused"]),
               pair(r["grouped"]) if r["grouped"] is not None else "-",
               ratio(r["separate"], r["grouped"]) if r["grouped"] is not None else "-"]
        rows.append(row)
        print("  " + "  ".join(row), flush=True)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths))
                    for r in [header, ["-" * w for w in widths], *rows]))
    print("(ratio = separate / fused: > 1 means fusion pays; wall seconds, and in brackets process CPU"
          " seconds, the steadier figure on a shared machine; the fit times include graph tracing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
