"""Fused vs separate training, by the clock, at the runner's real thread settings.

Runs that share data, inputs, batch size, epochs and optimizer can be trained as one Keras
model of K branches (``labreport.train.fusion``). Whether that pays for a user is the wall
time of an epoch of the K runs at the runner's settings, not the CPU time of one process:

- ``--jobs 1``: one process, TF threads (intra 2, inter 1) on 2 cores (runner.thread_split);
  separate = the K runs one after the other (``engine.train_and_evaluate``), fused = one
  ``fusion.train_group``;
- ``--jobs 2``: two worker processes at once, one thread each (as the runner's pool): both
  train the K runs one after the other (separate) or both train a fused group of K (fused),
  so the machine is loaded as in a real run; the machine then does 2 x K runs in a worker's
  time, so the figure is the workers' mean divided by 2.

Every figure is the machine's wall seconds for one epoch of the K runs, so the four numbers
of a family (separate/fused x jobs 1/2) compare directly.

Cases: K repeats (seeds derived as repeats derive them) of each family's reference
experiment, and with ``--sweeps`` the lab's own groups of experiments that share a fusion
key. Seconds per epoch are the fastest epoch after the first of each fit (the first one
traces the graph; it is in the whole-fit seconds; the minimum is the least disturbed figure
on a shared machine). Each measurement runs in a fresh process, so the
data, HOG cache and TF start-up are outside the figures. Asserts nothing.

    python -m bench.bench_fusion                          # every family, K = 3, full data, 4 epochs
    python -m bench.bench_fusion --family cnn --jobs 2    # one family, one setting
    python -m bench.bench_fusion --sweeps                 # also the lab's sweep groups

Grouped convolutions (one Conv2D with K x filters, ``groups=K`` for the next layers) were
measured on TensorFlow's CPU build (2026-11-25): the six lab CNNs, 2 epochs on 5,000 images,
had used > 100 CPU s unfinished where one by one took 9.6 CPU s; not pursued.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labreport.config import loader  # noqa: E402
from labreport.config.spec import ExperimentSpec  # noqa: E402
from labreport.train import fusion  # noqa: E402

BUILD = ROOT / "build"
FAMILIES = {  # family -> the reference experiment (as bench/__main__.py)
    "mlp raw": "raw-tanh-250",
    "mlp hog": "hog-sigmoid-p4-o8",
    "cnn": "cnn-relu-25",
    "cnn fashion": "fashion-conv9-100",
}
THREADS = {1: (2, 1), 2: (1, 1)}  # --jobs -> (intra, inter) per worker, as runner.thread_split on 2 cores


def repeats_of(spec: ExperimentSpec, k: int) -> list[ExperimentSpec]:
    """The first k runs of ``spec`` with repeats = k (their seeds, as the runner trains them)."""
    return list(dataclasses.replace(spec, repeats=k).runs())


def family_of(spec: ExperimentSpec) -> str:
    from labreport.train import eta

    return eta.family(spec)


def cases(lab, families: list[str], k: int, sweeps: bool) -> list[tuple[str, str, list[ExperimentSpec]]]:
    """(family, what, specs) to time."""
    by_name = {s.name: s for s in lab.experiments}
    out = [(fam, f"{k} repeats of {FAMILIES[fam]}", repeats_of(by_name[FAMILIES[fam]], k))
           for fam in families if FAMILIES[fam] in by_name]
    if sweeps:
        for group in fusion.groups(list(lab.experiments)):
            if len(group) > 1 and family_of(group[0]) in families:
                out.append((family_of(group[0]), f"sweep {group[0].name}.. ({len(group)})", list(group)))
    return out


# --------------------------------------------------------------------------- one worker process


def worker(job: dict) -> dict:
    """Train job["names"]'s specs (with their seeds) fused or one by one; per-epoch wall seconds."""
    from labreport.train import datasets, engine, features

    lab = loader.load(Path(job["config"]))
    by_name = {s.name: s for s in lab.experiments}
    specs = [dataclasses.replace(by_name[name], seed=seed) for name, seed in job["runs"]]
    engine.configure_threads(*job["threads"])
    ds = datasets.load(specs[0].dataset, data_dir=BUILD / "data")
    hog = lambda imgs, p, o, key: features.cached_hog(imgs, p, o, cache_dir=BUILD / "features", key=key)  # noqa: E731
    cfg = engine.QuickConfig(epochs=job["epochs"], n_train=job["train"], n_test=job["test"])
    engine.prepare_inputs(specs[0], ds, hog_features=hog, quick_cfg=cfg)  # HOG cache warm before the clock
    c0, t0 = time.process_time(), time.perf_counter()
    if job["mode"] == "fused":
        per_epoch: list[list[float]] = [[]]
        results = fusion.train_group(specs, ds, hog_features=hog, quick=True, quick_cfg=cfg,
                                     on_epochs=[lambda info: per_epoch[0].append(info.epoch_s)]
                                     + [None] * (len(specs) - 1))
    elif job["mode"] == "single":  # fusion's code path with one branch per fit: the pipeline alone
        per_epoch, results = [], []
        for s in specs:
            times: list[float] = []
            results += fusion.train_group([s], ds, hog_features=hog, quick=True, quick_cfg=cfg,
                                          on_epochs=[lambda info, times=times: times.append(info.epoch_s)])
            per_epoch.append(times)
    else:
        per_epoch = []
        results = []
        for s in specs:
            times: list[float] = []
            results.append(engine.train_and_evaluate(s, ds, hog_features=hog, quick=True, quick_cfg=cfg,
                                                     on_epoch=lambda info, times=times: times.append(info.epoch_s)))
            per_epoch.append(times)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    # One epoch of all K runs: the fastest epoch after the first of each fit (the first traces);
    # on a shared machine the minimum is the least disturbed measurement.
    steady = sum(min(t[1:] or t) for t in per_epoch)
    return {"epoch_s": steady, "wall_s": wall_s, "cpu_s": cpu_s,
            "statuses": [r["status"] for r in results], "threads": job["threads"]}


# --------------------------------------------------------------------------- driver


def measure(specs: list[ExperimentSpec], mode: str, jobs: int, args) -> dict:
    """Run ``jobs`` identical worker processes at once; their mean figures and the load before."""
    job = {"config": str(args.config), "runs": [(s.name, s.seed) for s in specs], "mode": mode,
           "threads": THREADS[jobs], "epochs": args.epochs, "train": args.train, "test": args.test}
    load = os.getloadavg()[0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "bench.bench_fusion", "--worker", json.dumps(job)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    outs = []
    for p in procs:
        stdout, _ = p.communicate()
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if p.returncode or not lines:
            raise SystemExit(f"worker failed ({p.returncode}): {stdout[-500:]}")
        outs.append(json.loads(lines[-1]))
    # The machine's seconds for one epoch of the K runs: ``jobs`` workers did K runs each at once.
    return {key: statistics.mean(o[key] for o in outs) / jobs for key in ("epoch_s", "wall_s")} | {
        "cpu_s": statistics.mean(o["cpu_s"] for o in outs),
        "load": load, "statuses": sorted({st for o in outs for st in o["statuses"]})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_fusion", description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("-k", type=int, default=3, help="repeats per group (default 3)")
    ap.add_argument("--train", type=int, default=60_000, help="training images (default all 60,000)")
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per fit (the first traces; default 4)")
    ap.add_argument("--family", action="append", choices=list(FAMILIES), help="only these families")
    ap.add_argument("--jobs", type=int, action="append", choices=[1, 2], help="only these --jobs settings")
    ap.add_argument("--sweeps", action="store_true", help="also the lab's groups of different experiments")
    ap.add_argument("--single", action="store_true",
                    help="also fusion's code path one run at a time (how much is the data pipeline, not fusion)")
    ap.add_argument("-c", "--config", type=Path, default=ROOT / "experiments.toml")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    lab = loader.load(args.config)
    families = args.family or list(FAMILIES)
    print(f"fused vs separate: {args.epochs} epochs on {args.train:,} train / {args.test:,} test images; "
          f"wall seconds per epoch of all K runs (fastest of epochs 2..), at the runner's threads; "
          f"{os.cpu_count()} cores", flush=True)
    header = ["family", "runs", "jobs", "separate s/epoch", "fused s/epoch", "ratio", "whole fits s sep/fused",
              "cpu ratio", "load before"] + (["single s/epoch"] if args.single else [])
    rows = []
    for fam, what, specs in cases(lab, families, args.k, args.sweeps):
        for jobs in args.jobs or [1, 2]:
            sep = measure(specs, "separate", jobs, args)
            fus = measure(specs, "fused", jobs, args)
            row = [fam, what, str(jobs), f"{sep['epoch_s']:.2f}", f"{fus['epoch_s']:.2f}",
                   f"{sep['epoch_s'] / fus['epoch_s']:.2f}x", f"{sep['wall_s']:.1f}/{fus['wall_s']:.1f}",
                   f"{sep['cpu_s'] / fus['cpu_s']:.2f}x", f"{sep['load']:.1f}/{fus['load']:.1f}"]
            if args.single:
                row.append(f"{measure(specs, 'single', jobs, args)['epoch_s']:.2f}")
            if sep["statuses"] != ["ok"] or fus["statuses"] != ["ok"]:
                row[1] += f" (statuses {sep['statuses']}/{fus['statuses']})"
            rows.append(row)
            print("  " + "  ".join(row), flush=True)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths))
                    for r in [header, ["-" * w for w in widths], *rows]))
    print("(s/epoch: the machine's wall seconds for one epoch of all K runs; --jobs 2: two workers at once, one"
          " thread each, each doing the K runs (so their mean / 2). ratio = separate / fused: > 1 means fusion"
          " pays. whole fits: the same for the whole fits, tracing included. cpu ratio: process CPU seconds."
          " load before: 1-minute load average before each measurement" + ("; single: fusion's pipeline, one"
          " run per fit" if args.single else "") + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
