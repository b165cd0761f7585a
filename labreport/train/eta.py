"""How long a run will take: calibrated seconds per epoch, the machine's load, the makespan.

Pure functions (no TensorFlow, no I/O), so the estimator is tested as such; only
``for_run`` (at the end) probes the CPU and reads the stored results for a run. A run's
estimate (one training of one experiment: ``repeats = 3`` is three runs, three tasks) is

    overhead(family) + epochs x epoch_s(shape, threads) x n_train / 60,000

where ``epoch_s`` comes, in this order, from

1. the per-epoch seconds stored by previous full runs of the same model shape (layers,
   dropout, batch size) at the same thread count, in ``build/runs/*/result.json`` (and
   ``build/runs/*/repeat-*/result.json``: every stored run of today's repeats): this
   machine, as it really ran; their median ratio to the table also corrects the other
   shapes of their family;
2. the table ``EPOCH_S``: seconds per epoch of the 16 shapes of the default lab on a quiet
   machine, from the CPU seconds measured by ``python -m bench.calibrate`` (CPU rather than
   wall seconds because the calibration machine was shared: CPU time is what an epoch
   costs, wall time is that divided by the share of a core the process gets);
3. for a shape in neither, the cost model below (MACs, conv outputs, steps) times the
   median table/model ratio of its family at that thread count (``MODEL_FACTOR``).

Table and model figures are CPU seconds of a quiet machine. ``crowding`` turns them into a
worker's wall seconds: a worker with a core to itself keeps it busy 98 % of the time (it
waits for Keras' Python loop between graph calls), and more workers than cores share what
the cores give (``--jobs 3`` on 2 cores: 1.5 threads a core, 89 % of a core's work each),
both measured on full labs. They are then divided by ``thread_share``, the fraction of a core each of our
threads can expect next to the other sessions, from what a probe thread got at the start of
the run (the median of five short windows spread over 0.9 s: one window can fall on a burst
of the other sessions; the 1-minute load average proved a poor guide on the shared
machine). Previous runs' figures are wall seconds already: not rescaled by the other
sessions' load, only from the workers per core they ran with to this run's. The run's
makespan is a list schedule of the tasks (longest first) over the jobs, as the process pool
runs them; as experiments finish, ``refine`` replaces the estimate of every remaining
experiment by its family's measured / estimated ratio.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labreport.config import param_counts
from labreport.config.spec import ExperimentSpec, LabConfig
from labreport.results import store
from labreport.train.engine import version_of as engine_version_of

N_TRAIN = 60_000

# (shape_key, intra-op threads) -> seconds per epoch on a quiet machine (60,000 train +
# 10,000 test images), from the process CPU seconds per epoch (median of the epochs after
# the first): one thread's CPU seconds are its wall seconds when it has a core to itself;
# two threads also wait for each other (not CPU time), so a 2-thread epoch is the larger of
# CPU / 2 and 1.35 / 2 of the 1-thread epoch (runner.thread_split's measured 1.2-1.5x). Measured with
# `python -m bench.calibrate` (its --table prints these literals) on the 2-core machine of
# the lab (AMD EPYC, family 0x1A), TensorFlow CPU build, 2026-11-25, at a load average of
# 6-14: CPU seconds, because wall seconds on that shared machine were 2-9x longer.
# threads 1: two calibrations at once (= --jobs 2); threads 2: alone (= --jobs 1).
# The conv shapes (and their OVERHEAD_S and MODEL_FACTOR) again on 2026-11-26, load 2 (the two
# calibrations only), after the 9-filter CNNs' micro-batches (models.micro_batch, engine 1+conv3).
# Their micro-batched shapes (the MNIST CNNs, fashion-*-25, fashion-conv9-100) then scaled by what
# updating the loss and metrics once per batch saved (models.accumulating_sequential, same
# numbers): at 1 thread by the clean-clone full labs of 2026-11-26 at --jobs 2 before and after
# (durations: MNIST CNNs 0.858, the batch-16,382 pair 0.867, conv9 0.796), at 2 threads by an
# A/B of cnn-relu-25 and fashion-relu-25 alone (0.94 and 0.91: 0.93).
EPOCH_S: dict[tuple[str, int], float] = {
    ('128-150-10 do bs1024', 1): 0.183,
    ('128-150-10 do bs1024', 2): 0.124,
    ('128-200-10 do bs1024', 1): 0.176,
    ('128-200-10 do bs1024', 2): 0.119,
    ('128-200-10 do bs512', 1): 0.182,
    ('128-200-10 do bs512', 2): 0.128,
    ('256-200-10 do bs1024', 1): 0.228,
    ('256-200-10 do bs1024', 2): 0.154,
    ('28x28x1-28x28x64-14x14x64-12544-100-10 bs8192', 1): 8.296,
    ('28x28x1-28x28x64-14x14x64-12544-100-10 bs8192', 2): 5.6,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-10-10 bs256', 1): 3.254,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-10-10 bs256', 2): 2.381,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-25-10 bs16382', 1): 3.156,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-25-10 bs16382', 2): 2.285,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-25-10 bs256', 1): 3.389,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-25-10 bs256', 2): 2.479,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-35-10 bs256', 1): 3.248,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-35-10 bs256', 2): 2.377,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-5-10 bs256', 1): 3.225,
    ('28x28x1-28x28x9-14x14x9-14x14x9-7x7x9-7x7x16-3x3x16-144-5-10 bs256', 2): 2.359,
    ('28x28x1-28x28x9-14x14x9-1764-100-10 bs4096', 1): 1.472,
    ('28x28x1-28x28x9-14x14x9-1764-100-10 bs4096', 2): 1.161,
    ('392-200-10 do bs512', 1): 0.233,
    ('392-200-10 do bs512', 2): 0.157,
    ('784-150-10 do bs4096', 1): 0.313,
    ('784-150-10 do bs4096', 2): 0.211,
    ('784-250-10 do bs4096', 1): 0.437,
    ('784-250-10 do bs4096', 2): 0.295,
    ('784-300-10 bs2048', 1): 0.437,
    ('784-300-10 bs2048', 2): 0.295,
    ('784-300-10 do bs2048', 1): 0.511,
    ('784-300-10 do bs2048', 2): 0.345,
}
# Seconds per experiment beyond its epochs (model build, graph tracing in the first epoch,
# the final predict), per family; CPU seconds of the same calibration (mostly one thread).
OVERHEAD_S: dict[str, float] = {
    'cnn': 2.47,
    'cnn fashion': 2.09,
    'mlp hog': 1.12,
    'mlp raw': 0.99,
}
DEFAULT_OVERHEAD_S = 2.0
# The same for --quick runs (2 epochs of 2,000 images: build, tracing and start-up are all
# there is): median duration_s per family of one `run --quick --jobs 2` of the default lab
# (2026-11-26 00:53, load 3.5-4) x the share of a core thread_share makes of its probe
# (0.64 -> 0.47), + 0.2 s between experiments (its wall time beyond start-up and the
# durations). One run's fit: announced 1m16s with the previous figures, it took 49 s.
QUICK_OVERHEAD_S = {"cnn": 2.0, "cnn fashion": 2.1, "mlp hog": 1.2, "mlp raw": 1.4}
# (family, threads) -> EPOCH_S / cost-model seconds, for shapes not in the table.
MODEL_FACTOR: dict[tuple[str, int], float] = {
    ('cnn', 1): 1.141,
    ('cnn', 2): 0.77,
    ('cnn fashion', 1): 1.273,
    ('cnn fashion', 2): 0.859,
    ('mlp hog', 1): 0.914,
    ('mlp hog', 2): 0.617,
    ('mlp raw', 1): 0.814,
    ('mlp raw', 2): 0.55,
}
# What full runs of a family took against the calibration above, at the share of a core they
# really got (``python -m bench.calibrate --replay``). Against the first calibration the MNIST
# CNNs took 0.77x (the full default lab, 2026-11-25) and 0.72x (the cnn family alone,
# 2026-11-26): short calibration fits overstate their epochs; the other families were within
# 12 % (fashion CNN 0.99x, HOG 0.95x and 1.12x, raw 1.08x) and are left as measured. The conv
# calibration was then measured again on a quieter machine (its MNIST CNN epochs 0.85x of the
# first, with the conv bias change's ~5 %); the full lab's MNIST CNN epochs, in CPU seconds
# (3.54 s for cnn-relu-25) against that calibration scaled back to the old engine (4.13 s),
# give 0.86. After the micro-batches (engine 1+conv3) the conv shapes were calibrated again
# (two calibrations at once, quiet machine): against that table the full lab's MNIST CNNs took
# 1.21x (`--replay` of the clean-clone run of 2026-11-26, 30m01s): 0.86 x 1.21 = 1.04. At one
# worker per core (the default since tf.data's autotuning is off) the MNIST CNNs share no core:
# the clean-clone run of 2026-11-26 at --jobs 2 (26m51s) replays at 0.92 of that: 0.96; the
# other families came within 3 % (fashion CNN 1.00, HOG 1.00, raw 1.03). With the table's
# micro-batched shapes rescaled (above), the next clean-clone run (24 min 22 s) replays at
# 24.3 min: cnn 0.99, fashion CNN 1.00, HOG 0.99, raw 1.04.
FULL_RUN_CORRECTION: dict[str, float] = {"cnn": 0.96}
# Once per worker process: TensorFlow's import and the data set (CPU seconds, measured).
WORKER_STARTUP_S = 4.0
# By the clock an epoch takes a little longer than its CPU seconds even with a core per worker
# (Keras' Python loop between graph calls, the next epoch's iterator). Measured on the 2-core
# machine, quiet, the full default lab from a clean clone:
#   until 2026-11-26, with tf.data's autotuning (its thread's teardown idled a worker ~1.3 s
#   an epoch): --jobs 2 31 min 57 s, the cores 82 % busy; --jobs 3 27 min 30 s, 92 % busy
#   (a third worker filled the gaps);
#   without it (engine.data_options): --jobs 2 26 min 51 s, 3,186 CPU s, 98 % busy (the
#   replay of its first figure: +23 % with 0.82, -1 % with 0.98); --jobs 3 29 min 25 s,
#   3,497 CPU s, also 98 % busy: 10 % more CPU for the same work (a third worker only shares
#   the cores' caches now), 1.096x --jobs 2's time, i.e. 0.98 / 1.096 = 0.89 for 3 workers on
#   2 cores (a quarter of the lab's epochs had given 1.045x: 432 s against 414 s).
# A worker's wall seconds per CPU second are 1 / WORKER_BUSY while each has a core, and the
# larger of that and our threads per core / CORES_BUSY beyond (the cores' time shared).
WORKER_BUSY = 0.98
CORES_BUSY = 0.89


# --------------------------------------------------------------------------- cost model

# A rough CPU cost model, for shapes not in the table (and for ordering): a sample costs
# its multiply-accumulates per layer kind plus the memory traffic of the conv feature
# maps; a training pass ~ 3 forward passes; each step has a fixed overhead. Fitted to the
# per-epoch times of the seven model shapes of the reference lab on the 2-core machine;
# MODEL_FACTOR rescales it per family and thread count to the calibration.
SECONDS_PER_MAC = {"dense": 1.3e-11, "conv": 1.7e-11}
SECONDS_PER_CONV_OUTPUT = 4.3e-10
SECONDS_PER_STEP = 2.0e-3


def forward_cost(spec: ExperimentSpec) -> dict[str, int]:
    """Per sample: multiply-accumulates of dense and conv layers, and conv output values."""
    out = {"dense": 0, "conv": 0, "conv_outputs": 0}
    for layer in param_counts.breakdown(spec).layers:
        if layer.kind == "conv":
            out["conv"] += layer.macs
            out["conv_outputs"] += layer.units
        else:
            out["dense"] += layer.macs  # 0 for the layers without weights
    return out


def model_epoch_s(spec: ExperimentSpec, n_train: int = N_TRAIN, n_test: int = 10_000) -> float:
    """The cost model's seconds per epoch of ``spec``."""
    cost = forward_cost(spec)
    per_sample = (SECONDS_PER_MAC["dense"] * cost["dense"] + SECONDS_PER_MAC["conv"] * cost["conv"]
                  + SECONDS_PER_CONV_OUTPUT * cost["conv_outputs"])
    steps = math.ceil(n_train / spec.batch_size)
    return (3 * n_train + n_test) * per_sample + steps * SECONDS_PER_STEP


def family(spec: ExperimentSpec) -> str:
    """The bench's families: 'mlp raw', 'mlp hog', 'cnn' (MNIST), 'cnn fashion'."""
    if spec.conv:
        return "cnn fashion" if spec.dataset == "fashion" else "cnn"
    return "mlp hog" if spec.hog else "mlp raw"


def shape_key(spec: ExperimentSpec) -> str:
    """What sets the speed of an epoch: the layer shapes, dropout or not, the batch size."""
    return _key(param_counts.breakdown(spec).topology, spec.dropout > 0, spec.batch_size)


def _key(topology: str, dropout: bool, batch_size: int) -> str:
    return f"{topology.replace(' -> ', '-')} {'do ' if dropout else ''}bs{batch_size}"


# --------------------------------------------------------------------------- previous runs


@dataclass(frozen=True)
class Measured:
    """Wall seconds per epoch of a previous full run, with what identifies its speed."""

    shape: str
    family: str
    threads: int
    epoch_s: float
    load: float = 1.0  # our threads per core in that run (workers x threads / cores; 1 if unknown)


def history_from_results(results: Iterable[Mapping]) -> list[Measured]:
    """The usable per-epoch timings in stored result dicts (full runs that trained, any status)."""
    out = []
    for r in results:
        try:
            if r.get("quick") or not r.get("epoch_s") or len((r.get("history") or {}).get("loss") or []) < 2:
                continue  # quick runs and 1-epoch runs are all start-up, not epochs
            if (r.get("data") or {}).get("n_train") not in (None, N_TRAIN):
                continue
            spec = r["spec"]
            shape = _key(r["params"]["topology"], float(spec.get("dropout") or 0) > 0, int(spec["batch_size"]))
            fam = ("cnn fashion" if spec.get("dataset") == "fashion" else "cnn") if spec.get("conv") else (
                "mlp hog" if spec.get("hog") else "mlp raw")
            host = r.get("host") or {}
            threads = int((host.get("threads") or {}).get("intra_op") or 0)
            engine = (r.get("versions") or {}).get("engine")
            if engine is not None and str(engine) != engine_version_of(conv=bool(spec.get("conv"))):
                continue  # trained by another engine (e.g. conv before conv2): another speed
            if threads:
                workers, cpus = host.get("workers"), host.get("cpus")
                load = load_of(int(workers), threads, int(cpus)) if workers and cpus else 1.0
                out.append(Measured(shape, fam, threads, float(r["epoch_s"]), load))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # an old or foreign result: no timing from it
    return out


# --------------------------------------------------------------------------- the estimator


def thread_share(probe_share: float, others_busy_cores: float, *, cores: int, our_threads: int,
                 weight: float = 1.0) -> float:
    """The fraction of a core each of our threads can expect during the run.

    ``probe_share``: what one spinning thread of ours got just now (``probe_cpu``);
    ``weight``: our session's CPU weight over a nice-0 session's (``session_weight``).
    Linux (autogroups) shares each core between sessions, not threads, and a session's
    weight is spread over the cores its threads run on, ``n = min(cores, our_threads)``.

    Below ~0.9 the probe's core is contended: its one thread held the session's whole
    weight there and got p of it, so the others there weigh (1 - p) / p of us; spread over
    n cores the session gets p / (p + n (1 - p)) of each, shared by its threads on it.
    Measured on the 2-core machine, 2026-11-25/26, ten times (probe, then what two spinning
    processes over 20 s or the two workers of a real run got): probe 0.31 / 0.39 / 0.52 /
    0.57 / 0.48 / 0.65 / 0.57 / 0.83 / 0.45 / 0.45 against 0.28 / 0.42 / 0.33 / 0.31 / 0.39 /
    0.30 / 0.29 / 0.52 / 0.27 / 0.27; the probe's figure itself was 0.9-2.2x what they got
    (median 1.6), this one 0.6-1.6x (median 1.1).

    Otherwise the probe had a core to itself and the others' busy cores say how many of
    our n cores we share, each with (we assume) one nice-0 session: there we get
    (weight / n) / (weight / n + 1) of the core. In a session at autogroup nice -15 (the
    full lab's setting) the probe read 0.97-1.0 on 2026-11-26 and two spinning processes
    then got 0.93 each, where a nice-0 session gets 2/3 with one other core busy."""
    if cores <= 0 or our_threads <= 0:
        return 1.0
    on_cores = min(cores, our_threads)
    if probe_share < 0.9:
        p = max(0.02, probe_share)
        return max(0.02, p / (p + on_cores * (1.0 - p)) * on_cores / our_threads)
    shared = max(0.0, min(on_cores, others_busy_cores - (cores - on_cores)))
    per_core = weight / on_cores
    ours = shared * per_core / (per_core + 1.0) + (on_cores - shared)
    return min(1.0, ours / our_threads)


def autogroup_weight(text: str) -> float:
    """A session's CPU weight over a nice-0 session's from /proc/self/autogroup
    ('/autogroup-589 nice -15'): Linux's weights step 1.25x a nice level. 1.0 if unreadable."""
    try:
        nice = int(text.split("nice")[1].split()[0])
    except (IndexError, ValueError):
        return 1.0
    return 1.25 ** -max(-20, min(19, nice))


def load_of(workers: int, threads: int, cores: int) -> float:
    """Our threads per core (at least 1): what ``crowding`` and ``Estimator.load`` take."""
    return max(1.0, workers * threads / cores) if cores > 0 else 1.0


def crowding(load: float) -> float:
    """Wall seconds of a worker's epoch per CPU second of it, with ``load`` of our threads per
    core (workers x threads / cores): the gaps of a worker that has a core to itself, or the
    cores' time divided between more workers than cores (see WORKER_BUSY and CORES_BUSY)."""
    if load <= 1.0:  # a core (or more) per worker: only its own gaps
        return 1.0 / WORKER_BUSY
    return max(1.0 / WORKER_BUSY, load / CORES_BUSY)


@dataclass(frozen=True)
class Estimator:
    """Seconds of experiments at ``threads`` intra-op threads per worker, on this machine now."""

    threads: int
    share: float = 1.0  # thread_share(...) at the start of the run: what the other sessions leave us
    load: float = 1.0  # our threads per core (workers x threads / cores): above 1, more workers than cores
    history: tuple[Measured, ...] = ()
    table: Mapping[tuple[str, int], float] = field(default_factory=lambda: EPOCH_S)

    def epoch_s(self, spec: ExperimentSpec) -> tuple[float, str]:
        """(wall seconds per full-data epoch, where the figure comes from)."""
        shape, fam = shape_key(spec), family(spec)
        measured = [self._as_now(m) for m in self.history if m.shape == shape and m.threads == self.threads]
        if measured:
            return statistics.median(measured), "previous runs"
        cpu, source = self._table_or_model(spec, shape, fam)
        ratios = [self._as_now(m) / (t * FULL_RUN_CORRECTION.get(fam, 1.0)) for m in self.history
                  if m.family == fam and m.threads == self.threads and (t := self.table.get((m.shape, self.threads)))]
        if ratios:  # this machine's previous runs say how fast the family really goes here
            return cpu * statistics.median(ratios), source + " x previous runs of the family"
        # CPU seconds (the calibration's) to wall seconds: the workers' gaps, or more workers
        # than cores; then what the other sessions leave us.
        return cpu * crowding(self.load) / self.share, source

    def _as_now(self, m: Measured) -> float:
        """A previous run's wall seconds per epoch at this run's number of workers per core
        (wall seconds already: not rescaled by the load of the other sessions)."""
        return m.epoch_s * crowding(self.load) / crowding(m.load)

    def _table_or_model(self, spec: ExperimentSpec, shape: str, fam: str) -> tuple[float, str]:
        correction = FULL_RUN_CORRECTION.get(fam, 1.0)
        if (shape, self.threads) in self.table:
            return self.table[(shape, self.threads)] * correction, "calibration"
        factor = MODEL_FACTOR.get((fam, self.threads), 1.0)
        return model_epoch_s(spec) * factor * correction, "cost model"

    def seconds(self, spec: ExperimentSpec, *, epochs: int | None = None, n_train: int = N_TRAIN) -> float:
        """Wall seconds of one experiment (its own epochs unless capped, e.g. by --quick)."""
        epochs = spec.epochs if epochs is None else epochs
        per_epoch, _ = self.epoch_s(spec)
        overheads = QUICK_OVERHEAD_S if n_train < N_TRAIN else OVERHEAD_S
        overhead = overheads.get(family(spec), DEFAULT_OVERHEAD_S) / self.share * max(1.0, self.load)
        return overhead + epochs * per_epoch * min(1.0, n_train / N_TRAIN)

    def startup_s(self) -> float:
        return WORKER_STARTUP_S / self.share * max(1.0, self.load)


# --------------------------------------------------------------------------- schedule


def makespan(durations_s: Sequence[float], jobs: int, busy_s: Sequence[float] = (), *,
             sizes: Sequence[int] = (), busy_sizes: Sequence[int] = (), admission=None) -> float:
    """Wall time of running ``durations_s`` in this order on ``jobs`` workers, each task going
    to the first free worker (a process pool); ``busy_s``: seconds left on workers already busy.

    With ``admission`` (``memory.Admission``) and the tasks' memory ``sizes`` (``busy_sizes``
    of the busy ones), a task starts only when the rule lets it, as the runner's pool does:
    a big one waits for memory, and a smaller one behind it may go first."""
    jobs = max(1, jobs)
    if admission is None or admission.budget is None:
        free = sorted([max(0.0, b) for b in busy_s][:jobs] + [0.0] * max(0, jobs - len(busy_s)))
        heapq.heapify(free)
        end = max(free) if free else 0.0
        for d in durations_s:
            t = heapq.heappop(free) + max(0.0, d)
            end = max(end, t)
            heapq.heappush(free, t)
        return end
    # Each simulated worker: when it is free, and the largest run it trained (what it holds).
    ends = [max(0.0, b) for b in busy_s][:jobs]
    holds = list(busy_sizes or [0] * len(ends))[: len(ends)]
    workers = [[e, h] for e, h in zip(ends, holds)] + [[0.0, 0] for _ in range(jobs - len(ends))]
    waiting = [(max(0.0, d), size) for d, size in zip(durations_s, sizes or [0] * len(durations_s))]
    now = 0.0
    while waiting:
        if admission.recycle:  # a finished run's worker process ends: a new one holds nothing
            for w in workers:
                w[1] = w[1] if w[0] > now else 0
        while True:
            idle = sorted((w for w in workers if w[0] <= now), key=lambda w: w[1])
            i = admission.pick([w[1] for w in waiting], sum(w[1] for w in workers), idle[0][1] if idle else 0,
                               len(workers) - len(idle))
            if i is None:
                break
            d, size = waiting.pop(i)
            idle[0][0], idle[0][1] = now + d, max(idle[0][1], size)  # on the idle worker holding least
        if waiting:  # the next start waits for the next end
            now = min(w[0] for w in workers if w[0] > now)
    return max([now] + [w[0] for w in workers])


def epochs_left_s(elapsed_s: float, epoch: int, epochs: int, first_epoch_s: float | None = None) -> float:
    """Seconds left of a running experiment at the pace of its own epochs so far.

    The first epoch also traces the graph (seconds, for a small MLP more than its epoch):
    given ``first_epoch_s``, the pace is that of the epochs after it (hog-sigmoid-p4-o8 under
    load: 1.18 s, then 0.33 s; counted in, the pace at epoch 2 read 0.76 s an epoch, and its
    98 epochs left 74 s where 44 s were)."""
    if epoch >= epochs or epoch <= 0:
        return 0.0
    if first_epoch_s is not None and epoch >= 2:
        pace = (elapsed_s - first_epoch_s) / (epoch - 1)
    else:
        pace = elapsed_s / epoch
    return max(0.0, pace) * (epochs - epoch)


def refine(estimates_s: Mapping[str, float], families: Mapping[str, str],
           finished: Mapping[str, float]) -> dict[str, float]:
    """Estimates of every experiment corrected by what the finished ones took.

    ``finished``: name -> measured seconds. Each family's ratio (measured / estimated) applies
    to its remaining experiments; a family with none finished yet takes the overall ratio.
    """
    by_family: dict[str, list[tuple[float, float]]] = {}
    for name, took in finished.items():
        if name in estimates_s and estimates_s[name] > 0 and took > 0:
            by_family.setdefault(families[name], []).append((took, estimates_s[name]))
    pairs = [p for ps in by_family.values() for p in ps]
    overall = sum(t for t, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.0
    ratio = {f: sum(t for t, _ in ps) / sum(e for _, e in ps) for f, ps in by_family.items()}
    return {name: est * ratio.get(families[name], overall) for name, est in estimates_s.items()}


# --------------------------------------------------------------------------- measuring the machine
# The only functions here that look outside their arguments: the runner calls for_run once.


def for_run(config: LabConfig, build: Path, *, jobs: int, threads: tuple[int, int] | None,
            cores: int) -> Estimator:
    """The estimator of a run: thread count per worker, this machine's share of a core now
    (probed: local workers only), the previous full runs stored in ``build``."""
    intra = threads[0] if threads else 1  # remote workers: their own cores, no local load
    # The other sessions' load (share) and our own workers' (load) are kept apart: three
    # workers on two cores are not a busy machine, and previous runs rescale by the latter.
    share = thread_share(*probe_cpu(cores), cores=cores, our_threads=min(max(1, cores), jobs * intra),
                         weight=session_weight()) if threads else 1.0
    load = load_of(jobs, intra, cores) if threads else 1.0
    results = (store.read_result(build, s.name, False, repeat=r)
               for s in config.experiments for r in range(1, s.repeats + 1))
    return Estimator(threads=intra, share=share, load=load,
                     history=tuple(history_from_results(r for r in results if r)))


def session_weight() -> float:
    """This session's CPU weight over a nice-0 session's (1.0 off Linux or without autogroups)."""
    try:
        with open("/proc/self/autogroup", encoding="ascii") as f:
            return autogroup_weight(f.read())
    except OSError:
        return 1.0


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass(frozen=True)
class ProbeWindow:
    """One window of the probe: what the spinning thread got, and how busy all cores were."""

    wall_s: float
    thread_s: float  # CPU seconds the spinning thread got in wall_s
    busy_jiffies: float | None = None  # /proc/stat, all CPUs (None off Linux)
    total_jiffies: float | None = None


# The probe: PROBE_WINDOWS windows of PROBE_WINDOW_S spinning, PROBE_GAP_S apart (0.9 s in
# all, 0.6 s of it spinning). One 0.3 s window read 66 % at the start of the full lab on
# 2026-11-25 where the run's 37 minutes then got 80 % of a core per thread (its CPU seconds
# over its wall time); spread windows and their median ride out a burst of the other
# sessions (a test suite starting) that one window takes for the machine's state.
PROBE_WINDOWS = 5
PROBE_WINDOW_S = 0.12
PROBE_GAP_S = 0.075


def probe_summary(windows: Sequence[ProbeWindow], cores: int) -> tuple[float, float]:
    """(share of a core one thread of ours gets, cores' worth of CPU the others use) from the
    probe's windows: the median of each over the windows, so that a spike (or a lull) in a
    minority of them does not set the run's estimate. (1.0, 0.0) without a usable window."""
    shares, others = [], []
    for w in windows:
        if w.wall_s <= 0:
            continue
        share = min(1.0, max(0.0, w.thread_s / w.wall_s))
        shares.append(share)
        if w.busy_jiffies is not None and w.total_jiffies and w.total_jiffies > 0:
            busy_cores = cores * min(1.0, max(0.0, w.busy_jiffies / w.total_jiffies))
            others.append(max(0.0, busy_cores - share))
    if not shares:
        return 1.0, 0.0
    return statistics.median(shares), (statistics.median(others) if others else 0.0)


def probe_cpu(cores: int, windows: int = PROBE_WINDOWS, window_s: float = PROBE_WINDOW_S,
              gap_s: float = PROBE_GAP_S) -> tuple[float, float]:
    """(share of a core one thread of ours gets now, cores' worth of CPU the others use).

    The 1-minute load average is a poor guide on a shared machine: it lags by a minute,
    counts threads that wait for I/O, and Linux shares the cores between sessions
    (autogroups) per core rather than between threads. So this thread spins for
    ``window_s`` at a time, ``windows`` times ``gap_s`` apart, and measures what it gets
    (and /proc/stat how busy the cores were); ``probe_summary`` takes the medians."""
    measured = []
    for i in range(max(1, windows)):
        if i:
            time.sleep(gap_s)
        before, wall0, cpu0 = _cpu_times(), time.monotonic(), time.thread_time()
        while time.monotonic() - wall0 < window_s:
            pass
        after, wall, cpu = _cpu_times(), time.monotonic() - wall0, time.thread_time() - cpu0
        if before is None or after is None or after[1] <= before[1]:
            measured.append(ProbeWindow(wall, cpu))
        else:
            measured.append(ProbeWindow(wall, cpu, after[0] - before[0], after[1] - before[1]))
    return probe_summary(measured, cores)
