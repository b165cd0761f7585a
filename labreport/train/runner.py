"""Which runs are stale, and running them: in-process, in worker processes (or, later, Dask).

Planning is pure and cheap: a spec's cache key hashes its result-relevant fields,
the engine version and the data's identity, which is the sha256 of the *expected*
checksum table (``datasets.CHECKSUMS``; ``datasets.load`` refuses any other bytes).
So ``labreport list``/``run`` with nothing stale import neither TensorFlow nor the data.

A run is one training of one experiment: an experiment with ``repeats = N`` has N runs
(``ExperimentSpec.runs()``), each with its own seed, cache key and stored result, so
raising N trains only the new runs and lowering it trains nothing.

Running: ``run()`` takes the build lock, orders the stale runs longest first, hands
them to an :class:`Executor` as :class:`Task` objects and writes each
:class:`Outcome` (result.json + run.log) from this process as soon as it arrives,
so an interrupted run loses only the experiments in flight. Executors only move
tasks, events and outcomes; the work itself is :class:`Worker.run`, which keeps the
data sets and HOG features in memory across the experiments of one process.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TextIO

from labreport import __version__
from labreport.train import datasets
from labreport.train import engine
from labreport.train import eta
from labreport.train import fusion
from labreport.train import memory
from labreport.results import staleness, store
from labreport.results.layout import BuildLayout
from labreport.train.engine import EpochInfo, QuickConfig, engine_version
from labreport.config.loader import select
from labreport.config.spec import ExperimentSpec, LabConfig

LoadDataset = Callable[..., Any]  # datasets.load(name, data_dir=...) -> Dataset
Train = Callable[..., dict]  # engine.train_and_evaluate's signature


# --------------------------------------------------------------------------- planning
# The cache key and the fresh/stale decision live in results/staleness.py (shared with
# render, check and grade); these names stay for the runner's callers.
data_sha256 = staleness.data_sha256
cache_key = staleness.cache_key


class PlanEntry(NamedTuple):
    spec: ExperimentSpec
    status: str  # fresh | stale | missing | failed (staleness.decide's status)


def status_of(spec: ExperimentSpec, build: Path, *, quick: bool, quick_cfg: QuickConfig | None = None) -> str:
    return staleness.check(spec, BuildLayout(build, quick), quick_cfg=quick_cfg).status


def plan(config: LabConfig, build: Path, *, quick: bool, names: Sequence[str] | None = None,
         quick_cfg: QuickConfig | None = None) -> list[PlanEntry]:
    """(spec, status) for the selected experiments (each one's repeat 1); the reasons:
    ``staleness.check_all``. :func:`plan_runs` plans every run."""
    specs = select(config, names)
    decisions = staleness.check_all(config, BuildLayout(build, quick), specs=specs, quick_cfg=quick_cfg)
    return [PlanEntry(s, d.status) for s, d in zip(specs, decisions)]


def plan_runs(config: LabConfig, build: Path, *, quick: bool, names: Sequence[str] | None = None,
              quick_cfg: QuickConfig | None = None) -> list[PlanEntry]:
    """(run spec, status) for every run of the selected experiments (``repeats`` each), in
    config order; runs stored beyond today's ``repeats`` are neither listed nor touched."""
    layout = BuildLayout(build, quick)
    return [PlanEntry(run, staleness.check(run, layout, quick_cfg=quick_cfg).status)
            for spec in select(config, names) for run in spec.runs()]


# The time estimate (ordering longest first, the ETA) lives in eta.py: calibrated seconds
# per epoch per model shape and thread count, previous runs, the machine's load now.


def estimate_seconds(spec: ExperimentSpec, quick_cfg: QuickConfig | None = None,
                     estimator: eta.Estimator | None = None) -> float:
    """Expected wall seconds of ``spec`` (full run, or capped by ``quick_cfg``)."""
    estimator = estimator or eta.Estimator(threads=cpu_count())
    if quick_cfg is None:
        return estimator.seconds(spec)
    return estimator.seconds(spec, epochs=min(spec.epochs, quick_cfg.epochs), n_train=quick_cfg.n_train)


# --------------------------------------------------------------------------- work units


@dataclass(frozen=True)
class Task:
    """One run of one experiment, with everything a worker (local or remote) needs."""

    spec: ExperimentSpec
    index: int  # 1-based position in this run, for progress lines
    total: int
    quick: bool
    quick_cfg: QuickConfig | None
    cache_key: str
    data_dir: str
    features_dir: str
    estimate_s: float = 0.0
    threads: tuple[int, int] | None = None  # (intra-op, inter-op) for TF in the worker
    memory_bytes: int = 0  # estimated peak of the worker training it (memory.run_bytes; 0: not counted)
    # The other runs trained with this one as one fused Keras model (fuse_tasks; their
    # outcomes come back in this task's Outcome.more).
    fused: tuple[Task, ...] = ()

    @property
    def runs(self) -> tuple[Task, ...]:
        """This task's run and the runs fused with it."""
        return (self, *self.fused)

    @property
    def name(self) -> str:
        """The run's key: events, outcomes and the driver's tables are keyed by it."""
        return self.spec.run_key

    @property
    def label(self) -> str:
        """How progress lines name the run: 'raw-tanh-300 run 2/3'."""
        return self.spec.run_label


@dataclass(frozen=True)
class Event:
    """Progress from a worker: kind 'start', 'log' (payload: a line) or 'epoch' (an EpochInfo)."""

    name: str
    kind: str
    payload: Any = None


@dataclass(frozen=True)
class Outcome:
    """A finished experiment: its result dict and its complete log."""

    name: str
    result: dict
    log: str
    more: tuple[Outcome, ...] = ()  # the outcomes of the runs fused with this one (Task.fused)

    @property
    def all(self) -> tuple[Outcome, ...]:
        return (self, *self.more)


Emit = Callable[[Event], None]


class Worker:
    """Runs tasks; keeps data sets and HOG features in memory for the next tasks of this process."""

    def __init__(self, load_dataset: LoadDataset | None = None, train: Train | None = None,
                 train_group: Callable[..., list[dict]] | None = None):
        self.load_dataset = load_dataset or datasets.load
        self.train = train or engine.train_and_evaluate
        self.train_group = train_group or fusion.train_group  # fused tasks (fuse_tasks)
        self._datasets: dict[tuple[str, str], Any] = {}
        self._hog: dict[tuple[str, str, int, int], Any] = {}

    def dataset(self, name: str, data_dir: str) -> Any:
        key = (name, data_dir)
        if key not in self._datasets:
            try:
                self._datasets[key] = self.load_dataset(name, data_dir=Path(data_dir))
            except Exception as exc:  # noqa: BLE001 - remembered: no slow re-fetch per experiment
                self._datasets[key] = exc
        found = self._datasets[key]
        if isinstance(found, Exception):
            raise found
        return found

    def hog_features(self, features_dir: str) -> engine.HogFeatures:
        def compute(images, pixels_per_cell: int, orientations: int, key: str):
            memo_key = (features_dir, key, pixels_per_cell, orientations)
            if memo_key not in self._hog:
                from labreport.train import features

                self._hog[memo_key] = features.cached_hog(
                    images, pixels_per_cell, orientations, cache_dir=Path(features_dir), key=key)
            return self._hog[memo_key]

        return compute

    def run(self, task: Task, emit: Emit) -> Outcome:
        if task.fused:
            return self._run_fused(task, emit)
        lines: list[str] = []

        def log(line: str) -> None:
            stamped = f"{time.strftime('%H:%M:%S')} {line}"
            lines.append(stamped)
            emit(Event(task.name, "log", stamped))

        emit(Event(task.name, "start", os.getpid()))  # the pid: which run a dead worker held
        log(_first_line(task))
        memory.reset_peak()
        try:
            dataset = self.dataset(task.spec.dataset, task.data_dir)
            result = self.train(
                task.spec, dataset,
                hog_features=self.hog_features(task.features_dir),
                quick=task.quick, quick_cfg=task.quick_cfg, cache_key=task.cache_key,
                threads=task.threads, log=log, on_epoch=lambda info: emit(Event(task.name, "epoch", info)),
            )
        except Exception as exc:  # noqa: BLE001 - one experiment's failure must not stop the others
            log(traceback.format_exc().rstrip())
            result = failed_result(task, f"{type(exc).__name__}: {exc}")
        # The runner, not the trainer, owns the identity of what is stored.
        result.update(run_identity(task), quick=task.quick, cache_key=task.cache_key)
        _record_peak(result, memory.peak_mb())
        result = finite_result(result)
        return Outcome(task.name, result, "\n".join(lines) + "\n")


    # ------------------------------------------------------------------ fusion (issue U item 2)
    def _run_fused(self, task: Task, emit: Emit) -> Outcome:
        """Train ``task.runs`` as one fused model (fusion.train_group); one outcome per run,
        each with its own log, result and identity, as if it had been trained alone."""
        runs = task.runs
        lines: dict[str, list[str]] = {r.name: [] for r in runs}

        def logger(name: str) -> Callable[[str], None]:
            def log(line: str) -> None:
                stamped = f"{time.strftime('%H:%M:%S')} {line}"
                lines[name].append(stamped)
                emit(Event(name, "log", stamped))
            return log

        logs = [logger(r.name) for r in runs]
        for r, log in zip(runs, logs):
            emit(Event(r.name, "start", os.getpid()))
            log(_first_line(r))
        memory.reset_peak()
        try:
            dataset = self.dataset(task.spec.dataset, task.data_dir)
            results = self.train_group(
                [r.spec for r in runs], dataset,
                hog_features=self.hog_features(task.features_dir), quick=task.quick, quick_cfg=task.quick_cfg,
                cache_keys=[r.cache_key for r in runs], threads=task.threads, logs=logs,
                on_epochs=[lambda info, name=r.name: emit(Event(name, "epoch", info)) for r in runs],
            )
        except Exception as exc:  # noqa: BLE001 - one group's failure must not stop the others
            for log in logs:
                log(traceback.format_exc().rstrip())
            results = [failed_result(r, f"{type(exc).__name__}: {exc}") for r in runs]
        outcomes = []
        peak = memory.peak_mb()
        for r, result in zip(runs, results):
            result.update(run_identity(r), quick=r.quick, cache_key=r.cache_key)
            _record_peak(result, peak)
            outcomes.append(Outcome(r.name, finite_result(result), "\n".join(lines[r.name]) + "\n"))
        return replace(outcomes[0], more=tuple(outcomes[1:]))


def _record_peak(result: dict, peak_mb: int | None) -> None:
    """The worker's peak memory while it trained the run (a fused group: the group's), in
    ``host`` (None off Linux: not recorded). It includes what the worker still held from its
    earlier runs (TensorFlow's allocator keeps it): the run's own only in a fresh worker."""
    if peak_mb is not None and isinstance(result.get("host"), dict):
        result["host"] = {**result["host"], "peak_memory_mb": peak_mb}


def _first_line(task: Task) -> str:
    run = f" run {task.spec.repeat}/{task.spec.repeats}, seed {task.spec.seed}" if task.spec.repeats > 1 else ""
    return (f"labreport {__version__}, engine {engine_version(task.spec)}: "
            f"experiment {task.spec.name!r}{run}{' (quick)' if task.quick else ''}, pid {os.getpid()}")


def fuse_tasks(tasks: Sequence[Task], jobs: int) -> list[Task]:
    """The grouping step: the stale runs that fusion.plan puts together become one task
    (the first run's, the others in ``Task.fused``), never fewer tasks than ``jobs``.
    A group's estimate is the sum of its runs' over the measured gain (fusion.FUSED_SPEEDUP);
    the tasks stay longest first."""
    units = fusion.plan(list(tasks), lambda t: t.spec, jobs)
    fused = [replace(u[0], fused=tuple(u[1:]), estimate_s=sum(t.estimate_s for t in u) / fusion.FUSED_SPEEDUP,
                     memory_bytes=memory.run_bytes([t.spec for t in u], u[0].quick_cfg))
             if len(u) > 1 else u[0] for u in units]
    return sorted(fused, key=lambda t: -t.estimate_s)


def _fused_note(tasks: Sequence[Task]) -> str:
    groups = [t for t in tasks if t.fused]
    if not groups:
        return ""
    return (f"; {sum(len(t.runs) for t in groups)} of them as {len(groups)} fused model(s)"
            f" ({fusion.ENV_VAR}=0: one by one)")


def failed_outcome(task: Task, error: str) -> Outcome:
    """Every run of ``task`` failed with ``error`` (e.g. its worker process died)."""
    outcomes = [Outcome(r.name, failed_result(r, error), error + "\n") for r in task.runs]
    return replace(outcomes[0], more=tuple(outcomes[1:]))


def finite_result(result: dict) -> dict:
    """Make any trainer's result storable: non-finite numbers become null, and an "ok" result
    that held some is not ok (diverged if the training loss was among them, else failed);
    a status that is not one of store.STATUSES is stored as failed, saying what it was.
    The real engine already does this; other trainers (remote workers, tests) may not."""
    clean, n_bad = store.without_non_finite(result)
    if clean.get("status") not in store.STATUSES:  # stored as is, it would be a miss forever
        clean["error"] = (f"the trainer returned status {str(clean.get('status'))[:40]!r}; expected one of"
                          f" {', '.join(store.STATUSES)}")
        clean["status"] = "failed"
    elif n_bad and clean.get("status") == "ok":
        _, loss_bad = store.without_non_finite((result.get("history") or {}).get("loss", []))
        clean["status"] = "diverged" if loss_bad else "failed"
        clean["error"] = (f"{n_bad} NaN or infinite number(s) in the result"
                          + (" (the training loss diverged)" if loss_bad else ""))
    return clean


def run_identity(task: Task) -> dict:
    """The keys that say which run a stored result is: the experiment's name and the repeat."""
    return {"name": task.spec.name, "repeat": task.spec.repeat}


def failed_result(task: Task, error: str) -> dict:
    result = engine.base_result(task.spec, status="failed", quick=task.quick, cache_key=task.cache_key,
                                error=error.splitlines()[0] if error else "failed")
    result.update(run_identity(task))
    result["finished_at"] = engine.utc_now()
    return result


# --------------------------------------------------------------------------- executors


class Executor(Protocol):
    """Runs tasks somewhere and yields their outcomes as they finish (any order).

    ``emit`` must be called in the caller's thread (the runner writes files from it).
    A distributed backend (e.g. Dask) implements the same two methods.
    """

    def run(self, tasks: Sequence[Task], emit: Emit) -> Iterator[Outcome]: ...

    def close(self, *, cancel: bool = False) -> None: ...


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_split(jobs: int, cores: int | None = None) -> tuple[int, int]:
    """(intra-op, inter-op) TF threads per worker, so that jobs x intra-op = cores.

    Measured on 2 cores (paired per-epoch timings): inter-op 1 was as fast as or up to
    ~15% faster than TF's default (2) in 6 of 9 comparisons, never clearly slower; two
    single-threaded workers trained 1.2-1.5x more epochs per second than one
    two-threaded process (less synchronisation), so ``--jobs 2`` pays on 2 cores.
    """
    cores = cores or cpu_count()
    return max(1, cores // max(1, jobs)), 1


class InProcessExecutor:
    """Runs tasks one after the other in this process (jobs=1: no spawn cost, easy to debug)."""

    def __init__(self, worker: Worker | None = None):
        self.worker = worker or Worker()

    def run(self, tasks: Sequence[Task], emit: Emit) -> Iterator[Outcome]:
        for task in tasks:
            yield self.worker.run(task, emit)

    def close(self, *, cancel: bool = False) -> None:
        pass


# Process-pool workers: one Worker per process, built by the pool's initializer.
_PROCESS_WORKER: Worker | None = None
_PROCESS_EVENTS: Any = None


def _init_process(events: Any, load_dataset: LoadDataset | None, train: Train | None) -> None:
    global _PROCESS_WORKER, _PROCESS_EVENTS
    # Ctrl-C reaches the whole process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PROCESS_EVENTS = events
    _PROCESS_WORKER = Worker(load_dataset, train)


def _run_in_process(task: Task) -> Outcome:
    assert _PROCESS_WORKER is not None, "worker process not initialised"
    return _PROCESS_WORKER.run(task, _PROCESS_EVENTS.put)


class WorkerContext(multiprocessing.context.SpawnContext):
    """multiprocessing's spawn context (fork after TF/BLAS threads exist is unsafe) that keeps
    every worker process the pool creates.

    The pool records a worker in its own table only after starting it, so a Ctrl-C between
    the two left a running worker nobody stopped (a flaky CI failure); here a process is
    kept from its creation, before it starts.
    """

    process_class: type = multiprocessing.context.SpawnProcess

    def __init__(self) -> None:
        super().__init__()
        self.created: list[multiprocessing.process.BaseProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> multiprocessing.process.BaseProcess:  # noqa: N802 - multiprocessing's name
        process = self.process_class(*args, **kwargs)
        self.created.append(process)
        return process


def _note_start(held: dict[str, int], event: Event) -> None:
    """Record which worker process (the start event's pid) started which run."""
    if event.kind == "start" and isinstance(event.payload, int):
        held[event.name] = event.payload


class ProcessPoolExecutor:
    """Runs tasks in ``jobs`` spawned worker processes, TF threads split between them.

    A worker that dies (the out-of-memory killer's SIGKILL, a crash) breaks Python's pool:
    every task it holds fails at once, also those not started and those training fine on the
    other workers. Here only the runs of the dead worker fail, saying how it died; the others
    go on in a new pool, one worker fewer after a SIGKILL (memory is what ran out, most often).
    """

    def __init__(self, jobs: int, *, load_dataset: LoadDataset | None = None, train: Train | None = None,
                 context: WorkerContext | None = None, memory_budget: int | None = None, recycle: bool = False):
        self.context = context or WorkerContext()
        self.jobs = jobs
        self.memory_budget = memory_budget  # bytes the running tasks may hold together (None: no limit)
        # A new worker process for every task: TensorFlow keeps the memory of a process's largest
        # run until the process ends (memory.Admission), so where memory is short, each run
        # gives it back (the price: each run imports TensorFlow and loads its data anew).
        self.recycle = recycle
        self._initargs = (load_dataset, train)
        self.events = self.context.Queue()
        self.pool = self._new_pool()

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        self._pool_start = len(self.context.created)  # the workers this pool creates come after
        return futures.ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=self.context, initializer=_init_process,
            initargs=(self.events, *self._initargs), max_tasks_per_child=1 if self.recycle else None,
        )

    def run(self, tasks: Sequence[Task], emit: Emit) -> Iterator[Outcome]:
        held: dict[str, int] = {}  # run key -> pid of the worker process that started it

        def relay(event: Event) -> None:
            _note_start(held, event)
            emit(event)

        todo = list(tasks)
        while todo:
            pending: dict[futures.Future, Task] = {}
            broken: list[Task] = []
            while todo or pending:
                if not broken and not self._admit(todo, pending, held) and not pending:
                    break  # the pool broke before any of this pass's tasks started
                if not pending:
                    break
                done, _ = futures.wait(pending, timeout=0.2, return_when=futures.FIRST_COMPLETED)
                self._drain(relay)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        yield fut.result()
                    except futures.process.BrokenProcessPool:
                        broken.append(task)  # no new task goes to a broken pool: the others end too
                    except Exception as exc:  # noqa: BLE001 - one task's failure, the pool is fine
                        yield failed_outcome(task, f"worker process failed: {type(exc).__name__}: {exc}")
            if broken:
                outcomes, retry = self._recover(broken, held, waiting=len(todo))
                todo = retry + todo
                yield from outcomes
            elif todo:  # broken with nothing of ours in it: a new pool for the rest
                self.pool.shutdown(wait=True)
                self.pool = self._new_pool()

    def _admit(self, todo: list[Task], pending: dict[futures.Future, Task], held_by: dict[str, int]) -> bool:
        """Start waiting tasks (``todo``, in order) while a worker is free and memory allows
        (``memory.Admission``, with what each worker process holds now: at most ``jobs`` at
        once, so none waits inside the pool and a big one can wait for memory). False if the
        pool is broken (the task stays waiting)."""
        admission = memory.Admission(self.memory_budget, self.jobs)
        while todo and len(pending) < self.jobs:  # else nothing to start: no need to read /proc
            held, lightest = self._holdings(pending, held_by) if self.memory_budget is not None else (0, 0)
            i = admission.pick([t.memory_bytes for t in todo], held, lightest, len(pending))
            if i is None:
                return True
            try:
                fut = self.pool.submit(_run_in_process, todo[i])
            except futures.process.BrokenProcessPool:
                return False
            pending[fut] = todo.pop(i)
        return True

    def _holdings(self, pending: dict[futures.Future, Task], held_by: dict[str, int]) -> tuple[int, int]:
        """(bytes the workers hold: each one's resident memory, plus what each running task may
        still add to reach its estimate (all of it while its worker is not known yet); the
        resident bytes of the lightest worker that could take a new task, 0 while the pool
        has a worker still to start)."""
        rss = {p.pid: memory.resident_bytes(p.pid) for p in self.context.created[self._pool_start:]
               if p.pid is not None and p.exitcode is None}
        busy, to_come = set(), 0
        for task in pending.values():
            pid = held_by.get(task.name)
            if pid in rss:
                busy.add(pid)
                to_come += max(0, task.memory_bytes - rss[pid])
            else:
                to_come += task.memory_bytes
        free = [b for pid, b in rss.items() if pid not in busy] + ([0] if len(rss) < self.jobs else [])
        return sum(rss.values()) + to_come, min(free, default=0)

    def _recover(self, broken: list[Task], held: dict[str, int], waiting: int = 0) -> tuple[list[Outcome], list[Task]]:
        """The pool broke: fail the runs of the worker that died, give the others back to a new
        pool. Python's pool stops its other workers with SIGTERM, so a dead worker's exit code
        says which died first; each pass fails at least one task, so the retries end."""
        self.pool.shutdown(wait=True)  # its thread has stopped and reaped every worker
        # What the dead pool's workers said last: only which worker started which run counts.
        self._drain(lambda event: _note_start(held, event))
        exits = {p.pid: p.exitcode for p in self.context.created[self._pool_start:]  # this pool's, not earlier ones'
                 if p.pid is not None and p.exitcode is not None}
        died = {pid: code for pid, code in exits.items() if code not in (0, -signal.SIGTERM)}
        culprits = [t for t in broken if any(held.get(r.name) in died for r in t.runs)]
        if not culprits and died:  # its start event was lost with it: the run no stopped worker held
            stopped = {pid for pid, code in exits.items() if pid not in died}
            unheld = [t for t in broken if not any(held.get(r.name) in stopped for r in t.runs)]
            culprits = unheld if len(unheld) == 1 else []
        if not culprits:  # none died by itself that we can tell: fail those that had started
            culprits = [t for t in broken if any(r.name in held for r in t.runs)] or broken
        retry = [t for t in broken if t not in culprits]
        more = bool(retry) or waiting > 0  # runs left: in the broken pool, or not submitted yet
        fewer = more and self.jobs > 1 and any(code == -signal.SIGKILL for code in died.values())
        outcomes = []
        for task in culprits:
            code = next((died[held[r.name]] for r in task.runs if held.get(r.name) in died),
                        next(iter(died.values())) if len(died) == 1 else None)
            outcomes.append(failed_outcome(task, self._death(code, self.jobs, fewer)))
        for task in retry:
            for r in task.runs:
                held.pop(r.name, None)
        if more:
            if fewer:
                self.jobs -= 1
            self.events.close()
            self.events = self.context.Queue()  # a killed writer can leave the old one's lock held
            self.pool = self._new_pool()
        return outcomes, retry

    @staticmethod
    def _death(code: int | None, jobs: int, fewer: bool) -> str:
        """What a failed run's error says of its worker's death (one line)."""
        if code is None:
            return ("worker process failed: BrokenProcessPool: a worker of the pool died while this run was"
                    " in progress (which one could not be told)")
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        if code == -signal.SIGKILL:
            how += " (on Linux most often the out-of-memory killer: the experiments trained at once needed more" \
                   " memory than was free" + (f"; fewer at once need less: JOBS={jobs - 1} or --jobs {jobs - 1})"
                                              if jobs > 1 else ")")
        if fewer:
            how += f"; the other runs go on with {jobs - 1} worker{'s' if jobs > 2 else ''}"
        return f"worker process died: {how}"

    def _drain(self, emit: Emit) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):  # closed or half-written: nothing more
                return
            emit(event)

    def _stop_workers(self, grace_s: float = 5.0) -> None:
        """Ctrl-C: stop every worker the pool started (they ignore SIGINT) and leave none unreaped.

        The pool's own thread reaps the workers it knows once they die. Two threads reaping
        one child race (the loser finds it gone but not yet marked dead, so it still looks
        alive), so wait for the deaths without reaping, then for that thread, then join:
        by then each worker is reaped by exactly one thread.
        """
        started = [proc for proc in self.context.created if proc.pid is not None]
        for proc in started:
            proc.terminate()
        dying = {proc.sentinel: proc for proc in started}
        deadline = time.monotonic() + grace_s
        while dying and (left_s := deadline - time.monotonic()) > 0:
            for sentinel in mp_connection.wait(list(dying), timeout=left_s):
                del dying[sentinel]
        for proc in dying.values():  # e.g. still importing when SIGTERM came
            proc.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for proc in started:  # a worker the pool never recorded is ours to reap
            proc.join()

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            self._stop_workers()
        else:
            self.pool.shutdown(wait=True)
        self.events.close()


# --------------------------------------------------------------------------- progress


def fmt_duration(seconds: float | None) -> str:
    """75 -> '1m15s'; 3725 -> '1h02m'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Progress lines for a terminal (one rewritten line) or a log/CI (one line every N epochs)."""

    def __init__(self, stream: TextIO, *, live: bool, lines_per_run: int = 10):
        self.stream = stream
        self.live = live
        self.lines_per_run = lines_per_run
        self._live_line = False

    def _write(self, text: str, *, transient: bool = False) -> None:
        if self.live and self._live_line:
            self.stream.write("\r\x1b[K")
        self.stream.write(text if transient else text + "\n")
        self._live_line = transient
        self.stream.flush()

    def message(self, text: str) -> None:
        self._write(text)

    def epoch(self, task: Task, info: EpochInfo, run_left: Callable[[], str] | None = None,
              first_epoch_s: float | None = None) -> None:
        every = max(1, info.epochs // self.lines_per_run)
        if not self.live and info.epoch % every and info.epoch != info.epochs:
            return
        left_s = eta.epochs_left_s(info.elapsed_s, info.epoch, info.epochs, first_epoch_s)
        self._write(
            f"[{task.index}/{task.total}] {task.label}  epoch {info.epoch}/{info.epochs}  "
            f"loss {_f4(info.loss)}  test {_f4(info.val_loss)}  acc {_f4(info.val_accuracy)}  "
            f"ETA {fmt_duration(left_s)}{run_left() if run_left else ''}",
            transient=self.live,
        )

    def finished(self, task: Task, result: dict, left: str) -> None:
        m = result.get("metrics") or {}
        status = result.get("status", "?")
        if status == "ok":
            what = (f"ok  test loss {_f4(m.get('test_loss'))}  acc {_f4(m.get('test_accuracy'))}  "
                    f"F1 {_f4(m.get('macro_f1'))}")
        else:
            what = f"{status.upper()}: {result.get('error')}"
        self._write(f"[{task.index}/{task.total}] {task.label}  {what}  "
                    f"({fmt_duration(result.get('duration_s'))}){left}")


def _f4(v: Any) -> str:
    return "nan" if v is None else f"{v:.4f}"


# --------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunSummary:
    """What a run did: counts (of runs: an experiment with repeats counts once per run trained),
    and (run key, status) of every run trained, in finishing order (run key: the experiment's
    name for repeat 1, 'name/repeat-R' otherwise)."""

    ran: int = 0
    skipped: int = 0  # fresh results kept
    failed: int = 0
    diverged: int = 0
    duration_s: float = 0.0
    statuses: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed

    def names(self, status: str | None = None) -> tuple[str, ...]:
        """Run keys of the runs trained, optionally only those that ended with ``status``."""
        return tuple(name for name, st in self.statuses if status is None or st == status)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: finished results are stored; ``summary`` says what was done and
    ``message`` says it in one line, what was kept and what was not (the CLI prints it)."""

    def __init__(self, summary: RunSummary, message: str = ""):
        super().__init__("interrupted")
        self.summary = summary
        self.message = message or "interrupted: finished experiments are kept; run again to continue."


def interrupted_message(tasks: Sequence[Task], in_flight: set[str], ran: int, unit: str) -> str:
    """The one line Ctrl-C prints: the runs stored, those cut off in flight (a fused group's runs
    end together, so an interrupted group stores none of them), the ones never started."""
    word = unit.removesuffix("(s)")
    total = sum(len(t.runs) for t in tasks)
    cut = [t for t in tasks if any(r.name in in_flight for r in t.runs)]
    n_cut = sum(len(t.runs) for t in cut)
    parts = [f"interrupted: {ran} {word}{'s' * (ran != 1)} finished and stored"]
    if cut:
        parts.append(f"{', '.join(_task_text(t) for t in cut)}: interrupted, not stored")
    if total - ran - n_cut > 0:
        parts.append(f"{total - ran - n_cut} not started")
    return "; ".join(parts + ["run again to continue."])


def _task_text(task: Task) -> str:
    """'cnn-a', 'raw-tanh-300 run 2/3', or a fused group: 'raw-tanh-300 runs 2-3 (fused)'."""
    if not task.fused:
        return task.label
    specs = [r.spec for r in task.runs]
    if len({s.name for s in specs}) > 1:
        return f"{', '.join(s.run_label for s in specs)} (fused)"
    repeats = sorted(s.repeat for s in specs)
    contiguous = repeats == list(range(repeats[0], repeats[-1] + 1))
    return (f"{task.spec.name} runs {f'{repeats[0]}-{repeats[-1]}' if contiguous else ', '.join(map(str, repeats))}"
            " (fused)")


@dataclass
class _Tally:
    statuses: list[tuple[str, str]] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.statuses.append((outcome.name, outcome.result["status"]))

    def summary(self, n_skipped: int, start: float) -> RunSummary:
        count = [st for _, st in self.statuses].count
        return RunSummary(ran=len(self.statuses), skipped=n_skipped, failed=count("failed"),
                          diverged=count("diverged"), duration_s=round(time.perf_counter() - start, 3),
                          statuses=tuple(self.statuses))


def make_tasks(specs: Sequence[ExperimentSpec], build: Path, *, quick: bool,
               quick_cfg: QuickConfig | None, threads: tuple[int, int] | None = None,
               estimator: eta.Estimator | None = None) -> list[Task]:
    """One task per stale run (``specs``: run specs, see ``ExperimentSpec.runs``), longest
    first (a good makespan for a pool: the long ones do not come last)."""
    layout = BuildLayout(build)
    data_dir, features_dir = str(layout.data_dir), str(layout.features_dir)
    costed = sorted(((estimate_seconds(s, quick_cfg, estimator), s) for s in specs), key=lambda t: -t[0])
    return [
        Task(spec=s, index=i, total=len(costed), quick=quick, quick_cfg=quick_cfg,
             cache_key=cache_key(s, quick=quick, quick_cfg=quick_cfg), data_dir=data_dir,
             features_dir=features_dir, estimate_s=cost, threads=threads,
             memory_bytes=memory.run_bytes(s, quick_cfg))
        for i, (cost, s) in enumerate(costed, 1)
    ]


def run(
    config: LabConfig,
    build: Path,
    *,
    quick: bool = False,
    names: Sequence[str] | None = None,
    jobs: int = 1,
    force: bool = False,
    run_keys: Collection[str] | None = None,
    fuse: bool = True,
    progress: TextIO | None = None,
    load_dataset: LoadDataset | None = None,
    train: Train | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Run the stale (or, with ``force``, all) runs of the selected experiments and store each result.

    ``jobs``: worker processes (0 = one per core); ``executor`` replaces the local ones
    (e.g. Dask) and is closed by the run. ``run_keys`` (``ExperimentSpec.run_key``: 'name' for
    run 1, 'name/repeat-R') keeps only those runs of the selected experiments: the others are
    neither trained nor counted (verify --rerun trains run 1 and one picked run, not all N).
    ``fuse=False`` trains every run alone, as ``LABREPORT_FUSION=0`` does (verify --rerun).
    ``load_dataset``/``train`` replace
    datasets.load/engine.train_and_evaluate (tests). Raises store.BuildLocked if another
    run holds build/, UnknownExperiment for bad ``names``, and RunInterrupted (a
    KeyboardInterrupt) on Ctrl-C after stopping the workers; every result finished
    before that is kept.
    """
    start = time.perf_counter()
    build = Path(build)
    quick_cfg = QuickConfig.from_env() if quick else None
    with store.BuildLock(build):
        entries = plan_runs(config, build, quick=quick, names=names, quick_cfg=quick_cfg)
        if run_keys is not None:
            entries = [e for e in entries if e.spec.run_key in run_keys]
        todo = [e.spec for e in entries if force or e.status != "fresh"]
        n_skipped = len(entries) - len(todo)
        # Without repeats a run is an experiment, and the messages say so as they always did.
        unit = "run(s)" if any(e.spec.repeats > 1 for e in entries) else "experiment(s)"
        jobs = max(1, min(jobs if jobs > 0 else cpu_count(), len(todo) or 1))
        stream = progress if progress is not None else sys.stdout
        reporter = Progress(stream, live=_is_tty(stream) and jobs == 1)
        if n_skipped:
            reporter.message(f"{n_skipped} {unit} up to date in {store.runs_dir(build, quick)}/"
                             " (use --force to re-run)")
        if not todo:
            if executor is not None:
                executor.close()
            return _Tally().summary(n_skipped, start)
        # Local workers share this machine's cores; a given executor's hosts decide their own.
        threads = thread_split(jobs) if executor is None else None
        estimator = eta.for_run(config, build, jobs=jobs, threads=threads, cores=cpu_count())
        tasks = make_tasks(todo, build, quick=quick, quick_cfg=quick_cfg, threads=threads, estimator=estimator)
        if executor is None and train is None and fuse and fusion.enabled():  # the real engine, local workers
            tasks = fuse_tasks(tasks, jobs)
        preloaded = {}
        if executor is None:  # a remote executor's workers load from their own build/data
            preloaded = preload_data(tasks, load_dataset or datasets.load)
        # Local workers share this machine's memory: a run starts when it fits (memory.Admission).
        budget = memory.budget() if executor is None else memory.Budget(None, "remote")
        admission = memory.Admission(budget.bytes if jobs > 1 else None, jobs)
        admission = replace(admission, recycle=admission.limits([t.memory_bytes for t in tasks]))
        runs = [r for t in tasks for r in t.runs]
        of = f" of {len({r.spec.name for r in runs})} experiment(s)" if unit == "run(s)" else ""
        reporter.message(f"running {len(runs)} {unit}{of}{' (quick)' if quick else ''} with "
                         f"{jobs} job(s), estimated {fmt_duration(_first_estimate(tasks, admission, estimator))}"
                         + _load_note(estimator) + _fused_note(tasks))
        for line in memory.notes(admission, budget, {t.name if not t.fused else f"{t.name} (fused with"
                                                      f" {len(t.fused)} more)": t.memory_bytes for t in tasks}):
            reporter.message(line)
        if executor is None:
            if jobs == 1:
                worker = Worker(load_dataset, train)
                worker._datasets.update(preloaded)  # loaded and verified once, right above
                executor = InProcessExecutor(worker)
            else:  # the workers read the verified cache again; the driver need not hold the arrays
                preloaded.clear()
                executor = ProcessPoolExecutor(jobs, load_dataset=load_dataset, train=train,
                                               memory_budget=admission.budget, recycle=admission.recycle)
        sink = _Sink(build, quick, {r.name: r for t in tasks for r in t.runs}, reporter, jobs, unit=unit,
                     admission=admission)
        summary = _execute(executor, tasks, sink, n_skipped, start)
        problems = ", ".join(f"{n} {what}" for n, what in ((summary.failed, "failed"),
                                                            (summary.diverged, "diverged")) if n)
        reporter.message(f"ran {summary.ran} {unit}{f' ({problems})' if problems else ''} "
                         f"in {fmt_duration(summary.duration_s)}; results in {store.runs_dir(build, quick)}/")
        return summary


def preload_data(tasks: Sequence[Task], load_dataset: LoadDataset) -> dict[tuple[str, str], Any]:
    """Load (and so verify) every data set the tasks need, before anything is trained.

    A data set no source can give is not one failed experiment per task but a user error:
    raises datasets.DataError with every data set's full message (each source tried, and why).
    """
    loaded: dict[tuple[str, str], Any] = {}
    problems = []
    for key in dict.fromkeys((t.spec.dataset, t.data_dir) for t in tasks):
        try:
            loaded[key] = load_dataset(key[0], data_dir=Path(key[1]))
        except datasets.DataError as exc:
            problems.append(str(exc))
    if problems:
        raise datasets.DataError("\n".join(problems) + "\nnothing was trained.")
    return loaded


def _first_estimate(tasks: Sequence[Task], admission: memory.Admission, estimator: eta.Estimator) -> float:
    restart = estimator.startup_s() if admission.recycle else 0.0  # each run in a new worker process
    return estimator.startup_s() + eta.makespan([t.estimate_s + restart for t in tasks], admission.jobs,
                                                sizes=[t.memory_bytes for t in tasks], admission=admission)


def _load_note(estimator: eta.Estimator) -> str:
    if estimator.share >= 0.95:
        return ""
    return f" (the machine is busy: about {estimator.share:.0%} of a core per thread)"


def _execute(executor: Executor, tasks: list[Task], sink: _Sink, n_skipped: int, start: float) -> RunSummary:
    """Feed the executor, store each outcome as it arrives; on Ctrl-C stop the workers."""
    tally = _Tally()
    try:
        for fused in executor.run(tasks, sink.emit):
            for outcome in fused.all:  # one outcome per run, also for a fused task
                sink.store(outcome)
                tally.add(outcome)
    except KeyboardInterrupt:
        executor.close(cancel=True)
        sink.interrupted()
        summary = tally.summary(n_skipped, start)
        # Said once, by whoever catches it (the CLI): not here as well.
        raise RunInterrupted(summary, interrupted_message(tasks, sink.running - sink.done, summary.ran,
                                                          sink.unit)) from None
    except BaseException:  # e.g. the disk is full: still stop the workers we started
        executor.close(cancel=True)
        raise
    executor.close()
    return tally.summary(n_skipped, start)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Sink:
    """The driver side: writes run.log live and each outcome's files; prints progress."""

    def __init__(self, build: Path, quick: bool, tasks: dict[str, Task], reporter: Progress, jobs: int, *,
                 unit: str = "experiment(s)", admission: memory.Admission | None = None):
        self.build, self.quick, self.tasks, self.reporter, self.jobs = build, quick, tasks, reporter, jobs
        self.admission = admission  # the pool's memory rule: the time left plans with it too
        self.unit = unit  # what the messages count: experiment(s), or run(s) with repeats
        self.running: set[str] = set()
        self.done: set[str] = set()
        # ETA refinement: when each experiment started (driver clock), what the finished took,
        # the last epoch of the running ones.
        self.started: dict[str, float] = {}
        # The first run of each worker also imports TensorFlow and loads the data set (seconds
        # the first figure counts once, as start-up): it is not a measure of its experiment.
        self.cold: set[str] = set()
        self.took_s: dict[str, float] = {}
        self.last_epoch: dict[str, EpochInfo] = {}
        self.first_epoch_s: dict[str, float] = {}  # the first epoch also traces: not the pace

    def _log_path(self, key: str) -> Path:
        spec = self.tasks[key].spec  # events and outcomes carry the run key
        return BuildLayout(self.build, self.quick).log_path(spec.name, spec.repeat)

    def emit(self, event: Event) -> None:
        if event.name in self.done:
            return  # a late line from a finished experiment: its full log is already stored
        if event.kind == "start":
            self.running.add(event.name)
            if len(self.started) < self.jobs:
                self.cold.add(event.name)
            self.started[event.name] = time.perf_counter()
            path = self._log_path(event.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        elif event.kind == "log":
            with self._log_path(event.name).open("a", encoding="utf-8") as f:
                f.write(event.payload + "\n")
        elif event.kind == "epoch":
            self.last_epoch[event.name] = event.payload
            if event.payload.epoch == 1:
                self.first_epoch_s[event.name] = event.payload.elapsed_s
            self.reporter.epoch(self.tasks[event.name], event.payload,
                                lambda: f"  [run: about {self._left_s()} left]" if len(self.tasks) > 1 else "",
                                self.first_epoch_s.get(event.name))

    def store(self, outcome: Outcome) -> None:
        # run.log first: result.json's presence means the experiment is complete.
        task = self.tasks[outcome.name]
        store.write_text_atomic(self._log_path(outcome.name), outcome.log)
        # Stored where the driver planned the run, whatever a (remote) worker put in the result.
        result = {**outcome.result, **run_identity(task)}
        if task.threads is not None and isinstance(result.get("host"), dict):
            # Local workers share this machine's cores: how many there were sets an epoch's speed.
            result["host"] = {**result["host"], "workers": self.jobs}
        store.write_result(self.build, result, quick=self.quick)
        self.running.discard(outcome.name)
        self.done.add(outcome.name)
        self._record(task, outcome.result)
        self.reporter.finished(task, outcome.result, self._left())

    def _record(self, task: Task, result: dict) -> None:
        # Whole experiment as the driver saw it (data, build, fit, predict), else the trainer's
        # (fit and predict): so for a worker's first run, whose start-up would otherwise count
        # as its experiment's (a --quick run's first finish line raised 1m16s to 1m39s; it took 49 s).
        # A fused run's own share is its group's time over its branches (its duration_s already is).
        took = ((time.perf_counter() - self.started[task.name]) / ((result.get("fused") or {}).get("branches") or 1)) \
            if task.name in self.started and task.name not in self.cold else (result.get("duration_s") or 0.0)
        if result.get("status") == "ok" and took > 0:
            self.took_s[task.name] = took

    def _left(self) -> str:
        n_left = sum(1 for name in self.tasks if name not in self.done)
        return f"  [{n_left} left, about {self._left_s()}]" if n_left else ""

    def _left_s(self) -> str:
        """The run's time left: estimates corrected by the finished experiments and by the
        running ones' own epochs so far (from their second epoch: the first one traces)."""
        now = time.perf_counter()
        measured = dict(self.took_s)
        own_left: dict[str, float] = {}
        for name in self.running - self.done:
            info = self.last_epoch.get(name)
            if info is not None and info.epoch >= 2:
                own_left[name] = eta.epochs_left_s(info.elapsed_s, info.epoch, info.epochs,
                                                   self.first_epoch_s.get(name))
                measured[name] = info.elapsed_s + own_left[name]
        estimates = eta.refine({t.name: t.estimate_s for t in self.tasks.values()},
                               {t.name: eta.family(t.spec) for t in self.tasks.values()}, measured)
        left = [t for t in self.tasks.values() if t.name not in self.done]
        running = [t for t in left if t.name in self.running]
        busy = [own_left.get(t.name, estimates[t.name] - (now - self.started.get(t.name, now))) for t in running]
        waiting = [t for t in left if t.name not in self.running]
        return fmt_duration(eta.makespan([estimates[t.name] for t in waiting], self.jobs, busy,
                                         sizes=[t.memory_bytes for t in waiting],
                                         busy_sizes=[t.memory_bytes for t in running], admission=self.admission))

    def interrupted(self) -> None:
        for name in self.running - self.done:
            try:
                with self._log_path(name).open("a", encoding="utf-8") as f:
                    f.write(f"{time.strftime('%H:%M:%S')} interrupted (Ctrl-C): no result stored\n")
            except OSError:
                pass
