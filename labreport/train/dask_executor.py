"""Run experiments on a Dask distributed cluster (``labreport run --scheduler tcp://HOST:PORT``).

Same contract as the local executors of ``runner``: tasks go out, outcomes (result dict +
log) come back and are written by the driver, so caching, the build/ lock and failure
isolation are the runner's and do not change with the backend.

What crosses the cluster, and why:
- The driver connects lazily (a fully cached run needs no cluster) and an unreachable
  scheduler is a :class:`SchedulerUnreachable` (exit 2, address and reason, no traceback).
- Each task ships a small function *by value* (see :func:`_shipped`) that first compares the
  worker's labreport (version, engine version, digest of the code that shapes a result) with
  the driver's: a worker with another labreport, or none, fails that experiment with a
  sentence saying so instead of an unpickling error.
- Progress (start, log lines, epochs) goes from the worker through ``Worker.log_event`` (no
  round trip, the training thread never waits) to a topic the driver subscribes to, so the
  driver prints remote epochs as they happen, like a local run.
- A cancelled task (Ctrl-C on the driver, or the driver gone) stops at its next epoch: the
  worker's own task state says so, checked without any network call.
- A worker that dies mid-experiment: Dask re-runs the task on another worker (up to
  ``distributed.scheduler.allowed-failures`` times); the stored log says where it restarted.
  Beyond that the experiment is stored as failed with Dask's reason; the others go on.

Workers load the data from ``LABREPORT_DATA_DIR`` if set in *their* environment, else from
the task's data folder (``build/data``, relative to the folder the worker was started in),
fetching and verifying it like a local run. TensorFlow threads per worker process: the
worker's ``LABREPORT_TF_THREADS`` if set, else the host's cores shared between the Dask
worker threads the scheduler knows on that host.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from labreport.errors import UserError
from labreport.train import runner

CONNECT_TIMEOUT_S = 10.0  # env LABREPORT_DASK_TIMEOUT; Dask's own default (30 s) is long to wait for a typo
CLOSE_TIMEOUT_S = 5.0


class SchedulerUnreachable(UserError):
    """--scheduler names no reachable Dask scheduler (exit 2)."""


class SchedulerLost(UserError):
    """The connection to the scheduler broke during a run (exit 1): finished results are kept."""

    exit_status = 1


class Cancelled(Exception):
    """Raised on a worker at an epoch boundary when the driver no longer wants the result."""


# --------------------------------------------------------------------------- shipped by value


def _shipped() -> tuple[Callable[[], dict], Callable[..., tuple[str, Any]]]:
    """(identity, entry): the two functions a worker runs before any labreport code of its own.

    They are made in this closure rather than at module level because cloudpickle sends
    closures by value and module-level functions by reference: by value, a worker with an
    older labreport (or none) still runs this exact check and answers with a sentence.
    """

    def identity() -> dict:
        """labreport version, engine version and a digest of the code that shapes a result."""
        import hashlib
        from pathlib import Path

        import labreport
        from labreport.train import engine

        # Once per process: the files as they were when this process first ran a task, close to
        # the code it has loaded (an edit during a long run must not refuse a worker running the
        # same code as the driver). Kept on the package because this function travels by value.
        cached = getattr(labreport, "_dask_identity", None)
        if cached is not None:
            return dict(cached)
        root = Path(labreport.__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            # The CLI, the report and grading do not change what a worker computes.
            if rel.split("/", 1)[0] in ("report", "grading", "cli.py", "__main__.py"):
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        found = {"labreport": labreport.__version__, "engine": engine.engine_version(),
                 "code": digest.hexdigest()[:12]}
        labreport._dask_identity = found
        return dict(found)

    def describe(ident: dict) -> str:
        return f"labreport {ident['labreport']} (engine {ident['engine']}, code {ident['code']})"

    def labreport_experiment(payload: bytes, expected: dict, topic: str | None,
                             host_nthreads: dict) -> tuple[str, Any]:
        """On the worker: ("refused", why) or ("done", runner.Outcome)."""
        import sys

        try:
            from distributed import get_worker

            where = f"dask worker {get_worker().address}"
        except Exception:  # noqa: BLE001 - only for the message
            where = "dask worker"
        try:
            found = identity()
        except Exception as exc:  # noqa: BLE001 - no labreport, or a broken one
            return ("refused", f"{where} cannot import labreport ({type(exc).__name__}: {exc}; "
                               f"python {sys.executable}): install the driver's labreport there")
        if found != expected:
            return ("refused", f"{where} runs {describe(found)}, the driver {describe(expected)}: "
                               "install the same labreport on every worker")
        from labreport.train import dask_executor

        return ("done", dask_executor._run_remote(payload, topic, host_nthreads))

    return identity, labreport_experiment


# --------------------------------------------------------------------------- worker side

_WORKER: runner.Worker | None = None
_WORKER_SEAMS: tuple[Any, Any] = (None, None)  # the load_dataset/train seams _WORKER was built with


def tf_threads(worker_nthreads: int, host_nthreads: int | None, cores: int | None = None) -> tuple[int, int]:
    """(intra-op, inter-op) TensorFlow threads for one worker process.

    A host's cores are shared between the Dask worker threads running there (each one trains an
    experiment), like ``runner.thread_split`` does for local processes. ``LABREPORT_TF_THREADS``
    in the worker's environment wins.
    """
    raw = os.environ.get("LABREPORT_TF_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw), 1
    cores = cores or runner.cpu_count()
    total = max(host_nthreads or 0, worker_nthreads, 1)
    return max(1, cores * worker_nthreads // total), 1


def _run_remote(payload: bytes, topic: str | None, host_nthreads: dict) -> runner.Outcome:
    """Executed on a Dask worker: one runner.Worker per worker process, reused across tasks."""
    global _WORKER, _WORKER_SEAMS
    from distributed import get_worker
    from distributed.worker import thread_state

    task, load_dataset, train = pickle.loads(payload)
    worker = get_worker()
    # As the CLI does for local workers: TF's C++ start-up chatter would fill the worker's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    key = getattr(thread_state, "key", None)
    if _WORKER is None or (load_dataset, train) != _WORKER_SEAMS:
        _WORKER = runner.Worker(load_dataset, train)
        _WORKER_SEAMS = (load_dataset, train)
    host = urlsplit(worker.address).hostname
    threads = tf_threads(worker.state.nthreads, host_nthreads.get(host))
    # The worker's own data folder wins: the driver's path may not exist on this machine.
    data_dir = os.environ.get("LABREPORT_DATA_DIR") or task.data_dir
    task = dataclasses.replace(task, threads=threads, data_dir=data_dir)

    def cancelled() -> bool:
        ts = worker.state.tasks.get(key) if key is not None else None
        return key is not None and (ts is None or ts.state in ("cancelled", "released", "forgotten"))

    def emit(event: runner.Event) -> None:
        if event.kind == "epoch" and cancelled():
            raise Cancelled("cancelled by the driver")
        if topic is None:
            return
        payload_out = event.payload
        if event.kind == "epoch":
            payload_out = dataclasses.asdict(event.payload)
        elif event.kind == "start":
            payload_out = worker.address
        try:
            worker.log_event(topic, {"name": event.name, "kind": event.kind, "payload": payload_out})
        except Exception:  # noqa: BLE001 - progress is best effort, the result is not
            pass

    outcome = _WORKER.run(task, emit)
    where = (f"{time.strftime('%H:%M:%S')} ran on dask worker {worker.address} (pid {os.getpid()}, "
             f"TensorFlow threads {threads[0]}/{threads[1]}, data {data_dir})\n")
    return dataclasses.replace(outcome, log=outcome.log + where)


# --------------------------------------------------------------------------- driver side


class DaskExecutor:
    """Ships each task to a Dask worker; yields outcomes as they complete."""

    def __init__(self, scheduler: Any, *, progress: bool = True, load_dataset: Any = None, train: Any = None,
                 say: Callable[[str], None] | None = None, connect_timeout_s: float | None = None):
        # ``scheduler``: an address "tcp://host:port", or a Client (tests). The connection is
        # made by run(): a fully cached `labreport run --scheduler ...` needs no cluster.
        self.scheduler = scheduler
        self.progress = progress
        self.seams = (load_dataset, train)  # module-level callables: pickled by reference
        self.say = say or (lambda line: print(line, flush=True))
        if connect_timeout_s is None:
            connect_timeout_s = float(os.environ.get("LABREPORT_DASK_TIMEOUT") or CONNECT_TIMEOUT_S)
        self.connect_timeout_s = connect_timeout_s
        self.client: Any = None
        self._own_client = False
        self._topic: str | None = None
        self._pending: dict[str, tuple[Any, runner.Task]] = {}  # future key -> (future, task)
        self._n_tasks = 0
        self._unit = "experiment(s)"  # what the messages count; run(s) when an experiment repeats
        self._log_levels: dict[str, int] = {}

    # -- connection

    @property
    def address(self) -> str:
        return self.scheduler if isinstance(self.scheduler, str) else getattr(self.scheduler, "scheduler", "?")

    def _connect(self) -> Any:
        from distributed import Client

        if isinstance(self.scheduler, Client):
            return self.scheduler
        # Probe first: Dask retries a refused connection until its timeout and then only says
        # "timed out"; the socket error says what is wrong (refused, unknown host) at once.
        probe(self.scheduler, self.connect_timeout_s)
        try:
            client = Client(self.scheduler, timeout=self.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachable(_unreachable(self.scheduler, _reason(exc))) from None
        self._own_client = True
        return client

    def _describe_cluster(self) -> dict[str, int]:
        """Say which workers are there; {host: Dask threads on it}, to share its cores (tf_threads)."""
        nthreads: dict[str, int] = self.client.nthreads()
        by_host: dict[str, int] = {}
        for address, n in nthreads.items():
            host = urlsplit(address).hostname or address
            by_host[host] = by_host.get(host, 0) + n
        if not nthreads:
            self.say(f"dask: no worker connected to {self.address} yet; experiments wait for one "
                     f"(start it with `dask worker {self.address} --nthreads 1`)")
        else:
            self.say(f"dask: {len(nthreads)} worker(s), {sum(nthreads.values())} thread(s) at {self.address}")
        return by_host

    # -- running

    def run(self, tasks: Sequence[runner.Task], emit: runner.Emit) -> Iterator[runner.Outcome]:
        self.client = self._connect()
        self._quiet_dask()
        identity, entry = _shipped()
        self._n_tasks = len(tasks)
        self._unit = "run(s)" if any(t.spec.repeats > 1 for t in tasks) else "experiment(s)"
        expected = identity()
        host_nthreads = self._describe_cluster()
        inbox: queue.SimpleQueue = queue.SimpleQueue()  # ("event", msg) and ("done", key), from Dask's threads
        if self.progress:
            self._topic = f"labreport-{uuid.uuid4().hex}"
            self.client.subscribe_topic(self._topic, lambda ev: inbox.put(("event", ev[1])))
        for task in tasks:
            payload = _dumps((task, *self.seams))
            # pure=False: the same spec must run again if asked (e.g. --force).
            fut = self.client.submit(entry, payload, expected, self._topic, host_nthreads, pure=False,
                                     # a run key is 'name/repeat-R': no '/' in a Dask key (dashboard URLs)
                                     key=f"labreport-{task.name.replace('/', '.')}-{uuid.uuid4().hex[:8]}")
            self._pending[fut.key] = (fut, task)
            fut.add_done_callback(lambda f: inbox.put(("done", f.key)))
        started: dict[str, str] = {}  # name -> worker address of its latest start
        notes: dict[str, list[str]] = {}  # lines the driver adds to an experiment's stored log
        while self._pending:
            kind, item = inbox.get()  # Ctrl-C interrupts this wait (the runner then cancels)
            if kind == "event":
                self._on_event(item, emit, started, notes)
                continue
            if item not in self._pending:
                continue
            self._drain(inbox, emit, started, notes)  # progress before the result, as locally
            fut, task = self._pending.pop(item)
            outcome = self._outcome(fut, task)
            extra = "".join(line + "\n" for line in notes.pop(task.name, []))
            yield dataclasses.replace(outcome, log=extra + outcome.log) if extra else outcome

    def _outcome(self, fut: Any, task: runner.Task) -> runner.Outcome:
        try:
            kind, value = fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker fails this experiment only
            if self.client.status != "running":
                # Not this experiment's fault: store nothing for the unfinished ones (a rerun
                # continues), like an interruption, and say what happened.
                n_done = self._n_tasks - len(self._pending) - 1
                raise SchedulerLost(
                    f"lost the connection to the Dask scheduler at {self.address} "
                    f"({type(exc).__name__}); {n_done} {self._unit} finished and stored, "
                    f"{len(self._pending) + 1} not; run again to continue") from None
            error = f"dask: {type(exc).__name__}: {_reason(exc)}"
            return runner.Outcome(task.name, runner.failed_result(task, error), error + "\n")
        finally:
            fut.release()  # the worker may drop the result now
        if kind == "refused":
            return runner.Outcome(task.name, runner.failed_result(task, value), value + "\n")
        return value

    def _on_event(self, msg: dict, emit: runner.Emit, started: dict, notes: dict) -> None:
        name, kind, payload = msg.get("name"), msg.get("kind"), msg.get("payload")
        if kind == "epoch":
            payload = runner.EpochInfo(**payload)
        elif kind == "start":
            if name in started:  # Dask re-runs a task whose worker died
                line = (f"{time.strftime('%H:%M:%S')} restarted on dask worker {payload}: "
                        f"the worker running it ({started[name]}) was lost")
                notes.setdefault(name, []).append(line)
            started[name] = payload
            payload = None
        emit(runner.Event(name, kind, payload))
        if kind == "start" and notes.get(name):
            emit(runner.Event(name, "log", notes[name][-1]))

    def _drain(self, inbox: queue.SimpleQueue, emit: runner.Emit, started: dict, notes: dict) -> None:
        """Handle the progress events already received; 'done' notices go back in the inbox."""
        done = []
        while True:
            try:
                kind, item = inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                self._on_event(item, emit, started, notes)
            else:
                done.append(item)
        for key in done:
            inbox.put(("done", key))

    def _quiet_dask(self) -> None:
        """Dask logs a lost connection with tracebacks; the run says it in one line (SchedulerLost)."""
        import logging

        self._log_levels = {}
        for name in ("distributed.client", "distributed.comm", "distributed.core", "distributed.batched"):
            logger = logging.getLogger(name)
            self._log_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)

    def close(self, *, cancel: bool = False) -> None:
        if self.client is None:
            return
        try:
            if cancel and self._pending:
                # Running tasks see the cancellation at their next epoch and stop (see _run_remote).
                self.client.cancel([fut for fut, _ in self._pending.values()], force=True)
            if self._topic is not None:
                self.client.unsubscribe_topic(self._topic)
        except Exception:  # noqa: BLE001 - the scheduler is gone: nothing left to cancel there
            if self.client.status == "running":
                raise
        finally:
            self._pending.clear()
            if self._own_client:
                try:
                    self.client.close(timeout=CLOSE_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone
                    if not cancel:
                        raise
            import logging

            for name, level in self._log_levels.items():
                logging.getLogger(name).setLevel(level)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _unreachable(address: str, reason: str) -> str:
    return (f"cannot reach the Dask scheduler at {address}: {reason} "
            "(start it with `dask scheduler`, or check the address and the firewall)")


def probe(address: str, timeout_s: float) -> None:
    """Raise SchedulerUnreachable unless ``address`` parses and (for tcp) accepts a connection."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location, 8786)
    except (ValueError, TypeError) as exc:
        raise SchedulerUnreachable(f"--scheduler {address!r} is not a Dask address like tcp://HOST:8786 "
                                   f"({_reason(exc)})") from None
    if scheme != "tcp":
        return  # tls/ucx/...: Dask's own connection attempt reports the problem
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror as exc:
        raise SchedulerUnreachable(_unreachable(address, f"unknown host {host!r} ({exc.strerror})")) from None
    except TimeoutError:
        raise SchedulerUnreachable(_unreachable(address, f"no answer within {timeout_s:g} s "
                                                         "(env LABREPORT_DASK_TIMEOUT)")) from None
    except OSError as exc:
        raise SchedulerUnreachable(_unreachable(address, (exc.strerror or _reason(exc)).lower())) from None


def _dumps(obj: Any) -> bytes:
    """Task and seams as bytes: the worker unpickles them only after its labreport passed the check."""
    import cloudpickle

    return cloudpickle.dumps(obj)

