"""Seconds per epoch of every distinct model shape of a lab, for the run's time estimate.

    python -m bench.calibrate --threads 1 --epochs 3            # one worker of --jobs 2
    python -m bench.calibrate --threads 2 --epochs 3            # --jobs 1 on 2 cores

For the ``--jobs 2`` figures run two of the first at the same time (that is what a run
does: two single-threaded workers share the cores); ``--reverse`` walks the shapes in the
other order so that the two processes mix families as a real run does. Prints one JSON
line per shape: the key ``labreport.train.eta.shape_key`` uses, the median epoch after the
first (wall and process CPU seconds: on a shared machine the CPU seconds are the steadier
figure), the first epoch, the whole train_and_evaluate seconds, and the load average.
The tables in ``labreport/train/eta.py`` are pasted from

    python -m bench.calibrate --table t1a.jsonl t1b.jsonl t2.jsonl

which turns CPU seconds into quiet-machine wall seconds and takes the median where a shape
was measured more than once: one thread's CPU seconds are its wall seconds on a quiet
machine; two threads also wait for each other, which is not CPU time, so their epoch is
the larger of CPU / 2 and 1.35 / 2 of the one-thread epoch (see ``tables``).

    python -m bench.calibrate --replay build/runs 0.66 0.80 1.0
    python -m bench.calibrate --replay build/runs --probe 0.66
    python -m bench.calibrate --replay build/runs --jobs 3 1.0

replays the first figure on the full runs stored in a build folder, at each share of a
core the other sessions left (1.0 on a quiet machine: the workers' own gaps and their number
per core are the estimator's ``crowding``, from the workers the results recorded, else 2),
or at the share ``eta.thread_share`` makes of each probe reading, against what they took.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labreport.config import loader  # noqa: E402
from labreport.train import eta  # noqa: E402

BUILD = ROOT / "build"
TWO_THREAD_SPEEDUP_INV = 1.35 / 2


def tables(paths: list[Path]) -> str:
    """The Python literals of eta.EPOCH_S, eta.OVERHEAD_S and eta.MODEL_FACTOR from JSON lines."""
    lab = loader.load(ROOT / "experiments.toml")
    specs = {eta.shape_key(s): s for s in reversed(lab.experiments)}
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    epoch: dict[tuple[str, int], list[float]] = {}
    overhead: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] != "ok" or r.get("epoch_cpu_s") is None:
            continue
        t = r["threads"]
        epoch.setdefault((r["key"], t), []).append(r["epoch_cpu_s"] / t)
        # beyond the epochs: build, tracing, predict (the first shape of a process also imports TF)
        overhead.setdefault(r["family"], []).append(r["total_cpu_s"] - r["epochs"] * r["epoch_cpu_s"])
    table = {k: statistics.median(v) for k, v in sorted(epoch.items())}
    for (key, t), seconds in list(table.items()):
        if t == 2 and (key, 1) in table:
            # Two threads wait for each other, and waiting is not CPU time: CPU / 2 is too
            # optimistic. Two 1-thread workers were measured 1.2-1.5x faster in total than one
            # 2-thread process (runner.thread_split), so one 2-thread epoch ~ 1.35 / 2 of a
            # 1-thread epoch; CPU / 2 stays the floor.
            table[(key, t)] = max(seconds, table[(key, 1)] * TWO_THREAD_SPEEDUP_INV)
    table = {k: round(v, 3) for k, v in table.items()}
    factor: dict[tuple[str, int], list[float]] = {}
    for (key, t), s in table.items():
        if key in specs:
            factor.setdefault((eta.family(specs[key]), t), []).append(s / eta.model_epoch_s(specs[key]))
    lines = ["EPOCH_S: dict[tuple[str, int], float] = {"]
    lines += [f"    ({k!r}, {t}): {v}," for (k, t), v in table.items()]
    lines += ["}", "OVERHEAD_S: dict[str, float] = {"]
    lines += [f"    {f!r}: {round(statistics.median(v), 2)}," for f, v in sorted(overhead.items())]
    lines += ["}", "MODEL_FACTOR: dict[tuple[str, int], float] = {"]
    lines += [f"    ({f!r}, {t}): {round(statistics.median(v), 3)}," for (f, t), v in sorted(factor.items())]
    lines += ["}"]
    return "\n".join(lines)


def replay(runs: Path, shares: list[float], jobs: int | None = None, config: Path = ROOT / "experiments.toml") -> str:
    """What the first figure would have said for the full runs stored in ``runs`` (a
    ``build/runs`` folder, read only), at each probed share of a core, against what they
    took: the per-experiment estimates, the pool schedule over ``jobs`` and the per-family
    ratios (took / estimated). The schedule of the measured durations in the estimate's
    order is printed too: it tells the schedule's error apart from the estimates'."""
    lab = loader.load(config)
    took: dict[str, float] = {}
    workers: list[int] = []
    for path in sorted(runs.glob("*/result.json")):
        r = json.loads(path.read_text())
        if r.get("status") == "ok" and not r.get("quick") and r.get("duration_s"):
            took[r["name"]] = float(r["duration_s"])
            if n := (r.get("host") or {}).get("workers"):
                workers.append(int(n))
    specs = [s for s in lab.experiments if s.name in took]
    jobs = jobs or (statistics.mode(workers) if workers else 2)
    threads = max(1, 2 // jobs)
    lines = [f"{len(specs)} stored full runs, {sum(took.values()) / 60:.1f} min of training, --jobs {jobs}"]
    for share in shares:
        est = eta.Estimator(threads=threads, share=share, load=eta.load_of(jobs, threads, 2))
        seconds = {s.name: est.seconds(s) for s in specs}
        order = sorted(specs, key=lambda s: -seconds[s.name])
        first = est.startup_s() + eta.makespan([seconds[s.name] for s in order], jobs)
        actual = eta.makespan([took[s.name] for s in order], jobs)
        ratios: dict[str, list[float]] = {}
        for s in specs:
            ratios.setdefault(eta.family(s), [0.0, 0.0])
            ratios[eta.family(s)][0] += took[s.name]
            ratios[eta.family(s)][1] += seconds[s.name]
        fam = ", ".join(f"{f} {t / e:.2f}" for f, (t, e) in sorted(ratios.items()))
        lines.append(f"share {share:.2f}: first figure {first / 60:.1f} min vs the measured durations scheduled "
                     f"the same way {actual / 60:.1f} min ({first / actual - 1:+.0%}); took/estimated: {fam}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:
        print(tables([Path(a) for a in argv[1:]]))
        return 0
    if argv[:1] == ["--replay"]:  # --replay RUNS_DIR [--jobs N] [--probe] SHARE [SHARE ...]
        rest = argv[2:]
        jobs = None
        if "--jobs" in rest:  # results stored before they recorded their workers
            i = rest.index("--jobs")
            jobs, rest = int(rest[i + 1]), rest[:i] + rest[i + 2:]
        values = [float(a) for a in rest if a != "--probe"] or [1.0]
        if "--probe" in rest:  # probe readings: the share each of two workers is then given
            values = [eta.thread_share(p, 0.0, cores=2, our_threads=2) for p in values]
        print(replay(Path(argv[1]), values, jobs))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reverse", action="store_true")
    ap.add_argument("-c", "--config", type=Path, default=ROOT / "experiments.toml")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from labreport.train import datasets, engine, features

    lab = loader.load(args.config)
    shapes: dict[str, object] = {}
    for spec in lab.experiments:
        shapes.setdefault(eta.shape_key(spec), spec)
    order = list(shapes.items())[::-1] if args.reverse else list(shapes.items())
    hog = lambda imgs, p, o, key: features.cached_hog(imgs, p, o, cache_dir=BUILD / "features", key=key)  # noqa: E731
    for key, spec in order:
        spec = dataclasses.replace(spec, epochs=args.epochs)
        ds = datasets.load(spec.dataset, data_dir=BUILD / "data")
        times: list[float] = []
        cpu: list[float] = []  # process CPU seconds at each epoch's end

        def on_epoch(info) -> None:
            times.append(info.epoch_s)
            cpu.append(time.process_time())

        t0 = time.perf_counter()
        cpu0 = time.process_time()
        result = engine.train_and_evaluate(spec, ds, hog_features=hog, threads=(args.threads, 1),
                                           on_epoch=on_epoch)
        total = time.perf_counter() - t0
        cpu_epochs = [b - a for a, b in zip(cpu, cpu[1:])]
        print(json.dumps({"key": key, "family": eta.family(spec), "threads": args.threads,
                          "epoch_s": round(statistics.median(times[1:] or times), 3),
                          "epoch_cpu_s": round(statistics.median(cpu_epochs), 3) if cpu_epochs else None,
                          "first_epoch_s": round(times[0], 3), "total_s": round(total, 2),
                          "total_cpu_s": round(time.process_time() - cpu0, 2),
                          "epochs": args.epochs, "status": result["status"],
                          "load1": round(os.getloadavg()[0], 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
