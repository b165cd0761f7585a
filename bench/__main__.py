"""``make bench``: labreport against the naive way, as ratios, in one run. Asserts nothing.

The naive way is the notebook the lab replaces: a plain Keras ``model.fit`` with Keras'
defaults (validation in batches of the training batch size, one step per call),
scikit-image's ``hog`` image by image, experiments one after the other, no cache.

    python -m bench                   # everything (about 5 minutes on 2 cores)
    python -m bench --only peak,flops # a subset: hog, overhead, peak, epochs, flops, fusion, cached, render, lab
    python -m bench --only render --render-baseline /tmp/base   # full render vs another checkout
    python -m bench --epochs 3        # epochs timed per family

Each section prints a table; times are the best of the repeats (the machines are noisy:
the minimum is the least disturbed measurement).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labreport.config import loader as config_mod  # noqa: E402
from labreport.results import store  # noqa: E402
from labreport.train import eta as eta_mod  # noqa: E402
from labreport.train import flops as flops_mod  # noqa: E402

from bench import peak as peak_mod  # noqa: E402

BUILD = ROOT / "build"
FAMILIES = {  # family -> the reference experiment timed for it
    "mlp raw": "raw-tanh-250",
    "mlp hog": "hog-sigmoid-p4-o8",
    "cnn": "cnn-relu-25",
    "cnn fashion": "fashion-conv9-100",
}


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --------------------------------------------------------------------------- peak
@dataclasses.dataclass(frozen=True)
class Peaks:
    """The references of every "fraction of peak" printed, by thread count."""

    gemm: dict[int, peak_mod.Gemm]
    fma: peak_mod.FmaPeak


def bench_peak() -> Peaks:
    section("peak: best numpy GEMM (fp32 4096x4096) and the CPU's theoretical FMA peak, per thread count")
    fma = peak_mod.fma_peak()
    gemms = {t: peak_mod.gemm(t) for t in range(1, min(2, fma.cores) + 1)}
    rows = [[str(t), f"{g.wall_gflops:.1f}", f"{g.cpu_gflops:.1f}", f"{fma.gflops(t):.0f}",
             f"{g.gflops / fma.gflops(t):.0%}", g.kernel] for t, g in gemms.items()]
    print(table(["threads", "GEMM GFLOP/s by clock", "per CPU second", "FMA peak GFLOP/s", "GEMM/FMA",
                 "BLAS kernel"], rows))
    print(f"FMA peak = {fma.formula()}")
    print(f"(best of 5 each; the GEMM reference below is the larger of clock and CPU-second rates: on a busy"
          f" machine the clock also counts other processes; load average now {os.getloadavg()[0]:.1f}"
          f" on {os.cpu_count()} cores)")
    return Peaks(gemms, fma)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- training
def _lab():
    return config_mod.load(ROOT / "experiments.toml")


def _with_epochs(spec, epochs: int):
    return dataclasses.replace(spec, epochs=epochs)


def naive_fit_epoch_s(spec, inputs, epochs: int) -> float:
    """Seconds per epoch of a plain notebook ``model.fit`` (Keras defaults, whole batches), epochs 2.. only."""
    import keras

    from labreport.train import engine
    from labreport.train import models

    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    model = models.build(spec, inputs.x_train.shape[1] if inputs.x_train.ndim == 2 else None, micro_batches=False)
    model.compile(optimizer=models.optimizer(spec), loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    with engine.keras_autotuning():  # a notebook's pipelines
        model.fit(inputs.x_train, engine.one_hot(inputs.y_train), batch_size=spec.batch_size, epochs=epochs,
                  validation_data=(inputs.x_test, engine.one_hot(inputs.y_test)), verbose=0, callbacks=[Clock()])
        model.evaluate(inputs.x_test, engine.one_hot(inputs.y_test), verbose=0)
        model.predict(inputs.x_test, verbose=0)
    return min(times[1:] or times)


def labreport_epoch_s(spec, dataset, features_dir: Path, epochs: int) -> tuple[float, float]:
    """(seconds per epoch after the first, total seconds) of labreport's engine on ``spec``."""
    from labreport.train import engine
    from labreport.train import features

    times: list[float] = []
    hog = lambda imgs, p, o, key: features.cached_hog(imgs, p, o, cache_dir=features_dir, key=key)  # noqa: E731
    t0 = time.perf_counter()
    result = engine.train_and_evaluate(spec, dataset, hog_features=hog,
                                       on_epoch=lambda info: times.append(info.epoch_s))
    total = time.perf_counter() - t0
    if result["status"] != "ok":
        raise SystemExit(f"{spec.name}: {result['status']}: {result['error']}")
    return min(times[1:] or times), total


def bench_epochs(epochs: int, peaks: Peaks) -> dict[str, float]:
    """One full-size epoch of each family: labreport vs naive, samples/s, fraction of peak.

    Returns family -> naive seconds per epoch / labreport seconds per epoch."""
    from labreport.train import datasets
    from labreport.train import engine
    from labreport.train import features

    section(f"full-size epochs (60,000 train + 10,000 test samples; best epoch of {epochs} after the first)")
    lab = _lab()
    threads = max(peaks.gemm)  # one process, TensorFlow's default: every core
    gemm = peaks.gemm[threads].gflops
    rows, out = [], {}
    for family, name in FAMILIES.items():
        spec = _with_epochs(lab.by_name(name), epochs)
        ds = datasets.load(spec.dataset, data_dir=BUILD / "data")
        hog = (lambda imgs, p, o, key: features.cached_hog(imgs, p, o, cache_dir=BUILD / "features", key=key))
        inputs = engine.prepare_inputs(spec, ds, hog_features=hog)
        naive = naive_fit_epoch_s(spec, inputs, epochs)
        ours, _ = labreport_epoch_s(spec, ds, BUILD / "features", epochs)
        rate = flops_mod.training_flops(spec, epochs=1).total / ours / 1e9
        out[family] = naive / ours
        rows.append([family, name, f"{spec.batch_size}", f"{naive:.2f}", f"{ours:.2f}", f"{naive / ours:.2f}x",
                     f"{60_000 / ours:,.0f}", f"{rate:.1f}", f"{rate / gemm:.1%}",
                     f"{rate / peaks.fma.gflops(threads):.1%}"])
    print(table(["family", "experiment", "batch", "naive s/ep", "ours s/ep", "speed-up", "train samples/s",
                 "GFLOP/s", f"of GEMM@{threads}", f"of FMA@{threads}"], rows))
    print(f"(one process, {threads} TensorFlow threads; GEMM@{threads} = best numpy GEMM with {threads} threads"
          f" = {gemm:.1f} GFLOP/s, FMA@{threads} = {peaks.fma.gflops(threads):.0f} GFLOP/s; {flops_mod.FORMULA};"
          " goal MLP >= 40%, CNN >= 25% of GEMM)")
    return out


def bench_overhead(epochs: int) -> None:
    """labreport's whole train_and_evaluate vs bare fit+evaluate+predict with the same settings."""
    import keras

    from labreport.train import datasets
    from labreport.train import engine
    from labreport.train import models

    section(f"engine overhead: labreport train_and_evaluate vs bare model.fit on the same spec ({epochs} epochs)")
    spec = _with_epochs(_lab().by_name("raw-tanh-250"), epochs)
    ds = datasets.load("mnist", data_dir=BUILD / "data")
    inputs = engine.prepare_inputs(spec, ds)

    def bare() -> None:
        keras.backend.clear_session()
        keras.utils.set_random_seed(spec.seed)
        model = models.build(spec, 784)
        model.compile(optimizer=models.optimizer(spec), loss="categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=engine.steps_per_execution(60_000, spec.batch_size))
        model.fit(inputs.x_train, engine.one_hot(inputs.y_train), batch_size=spec.batch_size, epochs=epochs,
                  validation_data=(inputs.x_test, engine.one_hot(inputs.y_test)),
                  validation_batch_size=engine.validation_batch(spec.batch_size), verbose=0)
        model.predict(inputs.x_test, batch_size=engine.validation_batch(spec.batch_size), verbose=0)

    def ours() -> None:
        result = engine.train_and_evaluate(spec, ds)
        assert result["status"] == "ok", result["error"]

    bare()  # warm-up: TF graph caches, thread pools
    t_bare = min(_timed(bare) for _ in range(2))
    t_ours = min(_timed(ours) for _ in range(2))
    # The difference is per experiment (data scaling, metrics, result), not per epoch: project
    # it onto the experiment's real length with the bare per-epoch time.
    full_epochs = _lab().by_name("raw-tanh-250").epochs
    per_epoch = t_bare / epochs
    projected = (per_epoch * full_epochs + (t_ours - t_bare)) / (per_epoch * full_epochs)
    print(table(["spec", "bare s", "labreport s", "ratio", "extra s", f"ratio at {full_epochs} epochs"],
                [[spec.name, f"{t_bare:.2f}", f"{t_ours:.2f}", f"{t_ours / t_bare:.3f}x",
                  f"{t_ours - t_bare:.2f}", f"{projected:.3f}x"]]))
    print("(goal <= 1.05x; the extra seconds are per experiment: data prep, metrics, result)")


# --------------------------------------------------------------------------- HOG
def bench_hog() -> None:
    section("HOG: batch (labreport.train.features) vs scikit-image per image")
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_hog.py"), "--repeat", "2"], check=False)


# --------------------------------------------------------------------------- fusion
def bench_fusion() -> None:
    section("fusion: experiments that share data, batch size and epochs trained as one model vs one by one")
    subprocess.run([sys.executable, "-m", "bench.bench_fusion"], cwd=ROOT, check=False)


# --------------------------------------------------------------------------- cached report
def bench_cached(build: Path) -> None:
    section("fully cached `labreport report` (nothing stale): wall time, TensorFlow imported?")
    lab = _lab()
    from labreport.train import runner

    stale = [s.name for s, status in runner.plan(lab, build, quick=False) if status != "fresh"]
    quick = False
    if stale:
        quick_stale = [s.name for s, st in runner.plan(lab, build, quick=True) if st != "fresh"]
        if quick_stale:
            print(f"skipped: {len(stale)} full results not fresh ({', '.join(stale[:3])}...) and no quick set"
                  " either; run `make report` (or QUICK=1) first")
            return
        quick = True
    code = ("import sys, time; t=time.perf_counter(); from labreport import cli; "
            f"rc = cli.main(['report', '-b', {str(build)!r}] + {['--quick'] if quick else []!r}); "
            "print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules, 's': time.perf_counter()-t}))")
    code = "import json; " + code
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        info = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append((wall, info))
    wall, info = min(runs, key=lambda r: r[0])
    print(table(["results", "wall s (incl. interpreter)", "tensorflow imported", "exit"],
                [["quick" if quick else "full", f"{wall:.2f}", str(info["tf"]), str(info["rc"])]]))
    print("(goal <= 5 s, no TensorFlow import)")


# --------------------------------------------------------------------------- full render
def bench_render(baseline: Path | None, repeat: int = 3) -> None:
    """A full re-render (HTML + PDF laid out again) of the whole lab on synthetic results.

    Figures are drawn once beforehand (they are cached by content); the PDF stamp is removed
    before each timed run so WeasyPrint lays out every page. ``baseline``: another checkout
    of labreport (e.g. ``git worktree add /tmp/base main``), timed the same way, in turn.
    """
    import shutil
    import statistics
    import tempfile

    section("full render of the default lab (synthetic results, figures cached, PDF laid out): wall s")
    variants = [("this checkout", ROOT)] + ([("baseline", baseline.resolve())] if baseline else [])
    data = BUILD / "data"
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory(prefix="labreport-bench-render-") as tmp:
        builds = {}
        for name, root in variants:
            build = Path(tmp) / name.replace(" ", "-")
            subprocess.run([sys.executable, str(ROOT / "tests" / "fixtures" / "synthetic.py"),
                            str(ROOT / "experiments.toml"), str(build)], check=True, capture_output=True)
            builds[name] = build
        env_of = {name: {**os.environ, "PYTHONPATH": str(root), "LABREPORT_DATA_DIR": str(data)}
                  for name, root in variants}
        cmd = lambda name, root: [sys.executable, "-m", "labreport", "render", "-c",  # noqa: E731
                                  str(root / "experiments.toml"), "-b", str(builds[name])]
        for name, root in variants:  # warm-up: draws the figures
            subprocess.run(cmd(name, root), cwd=root, env=env_of[name], check=True, capture_output=True)
        for _ in range(repeat):
            for name, root in variants:
                (builds[name] / ".report.pdf.stamp").unlink(missing_ok=True)
                t0 = time.perf_counter()
                subprocess.run(cmd(name, root), cwd=root, env=env_of[name], check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [[name, f"{min(t):.2f}", f"{statistics.median(t):.2f}"] for name, t in times.items()]
    print(table(["code", "min s", "median s"], rows))
    if baseline:
        ratio = statistics.median(times["this checkout"]) / statistics.median(times["baseline"])
        print(f"ratio this checkout / baseline (medians): {ratio:.2f}x (goal <= 1.2x)")


# --------------------------------------------------------------------------- whole lab
def bench_flops(peaks: Peaks, jobs: int = 3) -> float:
    """The lab's training FLOPs and the floor they set; returns the floor in seconds at GEMM speed."""
    section("the lab's training FLOPs and the time floor they set")
    lab = _lab()
    per_family: dict[str, int] = {}
    for spec in lab.experiments:
        per_family[_family(spec)] = per_family.get(_family(spec), 0) + flops_mod.training_flops(spec).total
    total = sum(per_family.values())
    threads = max(peaks.gemm)
    gemm, fma = peaks.gemm[threads].gflops, peaks.fma.gflops(threads)
    rows = [[f, f"{n / 1e12:.1f}", f"{n / total:.0%}"] for f, n in per_family.items()]
    rows.append(["total", f"{total / 1e12:.1f}", "100%"])
    print(table(["family", "TFLOP", "share"], rows))
    print(f"({flops_mod.FORMULA})")
    floor_s = total / (gemm * 1e9)
    print(f"floor at the best GEMM with {threads} threads ({gemm:.1f} GFLOP/s): {floor_s / 60:.1f} min;"
          f" at the FMA peak ({fma:.0f} GFLOP/s): {total / (fma * 1e9) / 60:.1f} min")
    for n in sorted({2, 3, jobs}):  # --jobs 2: a worker per core (the Makefile's default); 3: one more
        intra = max(1, threads // n)
        est = eta_mod.Estimator(threads=intra, load=eta_mod.load_of(n, intra, threads))
        tasks = sorted((est.seconds(s) for s in lab.experiments), reverse=True)
        eta_s = est.startup_s() + eta_mod.makespan(tasks, n)
        print(f"calibrated estimate of a clean `make report` (--jobs {n}, quiet machine): {eta_s / 60:.1f} min"
              f" = {eta_s / floor_s:.2f}x the GEMM floor (goal 1.5x)")
    return floor_s


def bench_lab(build: Path, naive_over_ours: dict[str, float], floor_s: float | None = None) -> None:
    section("whole default lab: measured wall time vs the naive sequential estimate")
    lab = _lab()
    results = [store.read_result(build, s.name) for s in lab.experiments]
    done = [r for r in results if r and r.get("status") == "ok" and not r.get("quick")]
    if len(done) < len(lab.experiments):
        print(f"skipped: {len(done)} of {len(lab.experiments)} full results stored; run `make report` first")
        return
    start = min(r["started_at"] for r in done)
    end = max(r["finished_at"] for r in done)
    from datetime import datetime

    wall = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    busy = sum(r["duration_s"] for r in done)
    # Naive: every experiment alone, its epochs at the naive per-epoch rate of its family measured
    # above, scaled by batch-size steps from the stored run; plus skimage HOG (27 s) per HOG experiment.
    naive = 0.0
    for r, spec in zip(results, lab.experiments):
        naive += r["duration_s"] * naive_over_ours.get(_family(spec), 1.0)
        if spec.hog:
            naive += 70_000 * 0.39e-3
    print(table(["experiments", "wall s", "sum of run s", "naive sequential s (est.)", "ratio wall/naive",
                 "wall / GEMM floor"],
                [[str(len(done)), f"{wall:,.0f}", f"{busy:,.0f}", f"{naive:,.0f}", f"{wall / naive:.2f}x",
                  f"{wall / floor_s:.2f}x" if floor_s else "?"]]))
    print("(goal <= 0.6x; naive = each run's time x the naive/ours epoch ratio of its family measured above,"
          " + 0.39 ms/image scikit-image HOG for each HOG experiment; wall = first start to last finish)")


def _family(spec) -> str:
    return eta_mod.family(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="hog,overhead,peak,epochs,flops,fusion,cached,render,lab")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--build", type=Path, default=BUILD)
    ap.add_argument("--render-baseline", type=Path, default=None, metavar="DIR",
                    help="another labreport checkout whose full render is timed against this one")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"labreport benchmarks on {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    if "hog" in only:
        bench_hog()
    if only & {"overhead", "epochs", "lab"}:
        from labreport.train import datasets

        datasets.fetch_all(BUILD / "data", log=lambda _m: None)
    if only & {"overhead", "epochs", "lab", "fusion"}:
        from labreport.train import engine

        engine.tensorflow()  # imported once here: its start-up banners are kept off the console
    if "overhead" in only:
        bench_overhead(args.epochs)
    ratios: dict[str, float] = {}
    peaks = bench_peak() if only & {"peak", "epochs", "flops", "lab"} else None
    if "epochs" in only or "lab" in only:
        ratios = bench_epochs(args.epochs, peaks)
    floor_s = bench_flops(peaks) if only & {"flops", "lab"} else None
    if "fusion" in only:
        bench_fusion()
    if "cached" in only:
        bench_cached(args.build)
    if "render" in only:
        bench_render(args.render_baseline)
    if "lab" in only:
        bench_lab(args.build, ratios, floor_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
