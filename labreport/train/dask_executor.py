"""Run experiments on a Dask distributed cluster (``labreport run --scheduler tcp://HOST:PORT``).

Same contract as the local executors of ``runner``: tasks go out, outcomes (result dict +
log) come back and are written by the driver, so caching, the build/ lock and failure
isolation are the runner's and do not change with the backend. Each Dask worker process
keeps one ``runner.Worker`` (data sets and HOG features stay in its memory between
experiments); progress events travel back through a ``distributed.Queue``.

Workers need labreport installed (same version as the driver) and the data: they load it
from ``task.data_dir`` like a local run, fetching it from the registries if it is not
there (a shared file system avoids one fetch per machine). TensorFlow on a worker uses
the GPU if the machine has one.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator, Sequence

from labreport.train import runner

_WORKER: runner.Worker | None = None
_WORKER_SEAMS: dict[str, Any] = {}  # the load_dataset/train seams _WORKER was built with (tests swap them)


def _run_remote(task: runner.Task, queue_name: str | None, threads: tuple[int, int] | None,
                load_dataset: Any = None, train: Any = None) -> runner.Outcome:
    """Executed on a Dask worker: one runner.Worker per worker process, reused across tasks."""
    global _WORKER
    if _WORKER is None or (load_dataset, train) != (_WORKER_SEAMS.get("load_dataset"), _WORKER_SEAMS.get("train")):
        _WORKER = runner.Worker(load_dataset, train)
        _WORKER_SEAMS.update(load_dataset=load_dataset, train=train)
        if threads and train is None:
            from labreport.train import engine

            engine.configure_threads(*threads)
    queue = None
    if queue_name:
        from distributed import Queue

        queue = Queue(queue_name)

    def emit(event: runner.Event) -> None:
        if queue is not None:
            try:
                queue.put(event)
            except Exception:  # noqa: BLE001 - progress is best effort, the result is not
                pass

    return _WORKER.run(task, emit)


class DaskExecutor:
    """Ships each task to a Dask worker; yields outcomes as they complete."""

    def __init__(self, scheduler: Any, *, threads: tuple[int, int] | None = None, progress: bool = True,
                 load_dataset: Any = None, train: Any = None):
        from distributed import Client

        # ``scheduler``: an address "tcp://host:port", or a Client/LocalCluster (tests).
        if isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
        else:
            self.client, self._own_client = Client(scheduler, set_as_default=False), True
        self.threads = threads
        self.progress = progress
        self.seams = (load_dataset, train)  # module-level callables: shipped to the workers by name
        self._futures: list[Any] = []

    def run(self, tasks: Sequence[runner.Task], emit: runner.Emit) -> Iterator[runner.Outcome]:
        from distributed import Queue, as_completed

        queue_name = f"labreport-{uuid.uuid4().hex}" if self.progress else None
        queue = Queue(queue_name, client=self.client) if queue_name else None
        by_key = {}
        for task in tasks:
            # pure=False: the same spec must run again if asked (e.g. --force).
            fut = self.client.submit(_run_remote, task, queue_name, self.threads, *self.seams, pure=False,
                                     key=f"labreport-{task.name}-{uuid.uuid4().hex[:8]}")
            by_key[fut.key] = task
            self._futures.append(fut)
        for fut in as_completed(list(self._futures)):
            self._drain(queue, emit)
            task = by_key[fut.key]
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails this experiment only
                error = f"dask worker failed: {type(exc).__name__}: {exc}"
                yield runner.Outcome(task.name, runner.failed_result(task, error), error + "\n")
        self._drain(queue, emit)

    @staticmethod
    def _drain(queue: Any, emit: runner.Emit) -> None:
        if queue is None:
            return
        while True:
            try:
                size = queue.qsize()
            except Exception:  # noqa: BLE001
                return
            if not size:
                return
            for event in queue.get(batch=size):
                emit(event)

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for fut in self._futures:
                fut.cancel()
        if self._own_client:
            self.client.close()

