"""Run one job per item in its own process, with a wall-time and a memory limit.

A hostile hand-in (deeply nested JSON, a decompression bomb, a PDF that sends the parser
into a loop) must cost the class one row, not the whole grading. Each item is handled by
a fresh process forked from a server that has already imported the grading code (cheap:
no interpreter start-up per item), ``jobs`` at a time. The child caps its address space
(RLIMIT_AS, above what it inherited) before touching the file; the parent kills it when its
time is up. Whatever happens -- a result, an exception, a MemoryError, a kill, a crash of
the interpreter -- the caller gets one outcome per item, in order.

An unexpected exception in a child is a bug: its traceback goes to stderr, and the item's
outcome says which exception it was.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

TIMEOUT, MEMORY, CRASHED = "timeout", "memory", "crashed"


@dataclass(frozen=True)
class Failure:
    """Why an item produced no result: ``kind`` is TIMEOUT, MEMORY or CRASHED."""

    kind: str
    message: str


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit_memory(memory_bytes: int) -> None:
    try:
        import resource

        inherited = _vm_size_bytes()
        if inherited:  # Linux: count only what the job itself allocates
            cap = inherited + memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):  # no RLIMIT_AS here: the time limit still holds
        pass


def _child(conn, work: Callable[[Any], Any], item: Any, memory_bytes: int) -> None:
    _limit_memory(memory_bytes)
    try:
        outcome: Any = work(item)
    except MemoryError:
        outcome = Failure(MEMORY, f"needed more than the memory limit ({memory_bytes // 2**20} MiB)")
    except RecursionError as e:
        outcome = Failure(CRASHED, f"nested too deeply to read (RecursionError: {e})")
    except BaseException as e:  # noqa: BLE001 - a bug in the job: keep its traceback, report the item
        print(f"labreport: unexpected error while handling {item}:", file=sys.stderr)
        traceback.print_exc()
        outcome = Failure(CRASHED, f"{type(e).__name__}: {e}"[:500])
    try:
        conn.send(outcome)
    except MemoryError:
        conn.send(Failure(MEMORY, f"needed more than the memory limit ({memory_bytes // 2**20} MiB)"))
    finally:
        conn.close()


def _context(preload: Sequence[str]):
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(list(preload))
    return ctx


def run_each(items: Sequence[Any], work: Callable[[Any], Any], *, jobs: int = 2, timeout_s: float = 120.0,
             memory_mb: int = 2048, preload: Sequence[str] = (),
             on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``work(item)`` for every item, each in its own process; a result or a Failure per item, in order.

    ``work`` must be a module-level function (it is pickled to the child). ``preload``: modules
    every job imports anyway, imported once by the server: shared by the children, neither
    paid per item nor counted in an item's memory limit.
    ``on_done(index, outcome)`` is called as items finish (for progress lines).
    """
    ctx = _context(preload)
    jobs = max(1, jobs)
    memory_bytes = int(memory_mb) * 2**20
    outcomes: list[Any] = [None] * len(items)
    pending = list(range(len(items)))[::-1]
    running: dict[int, tuple[Any, Any, float]] = {}  # index -> (process, connection, deadline)

    def finish(i: int, outcome: Any) -> None:
        outcomes[i] = outcome
        if on_done is not None:
            on_done(i, outcome)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop()
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, work, items[i], memory_bytes), daemon=True)
                proc.start()
                send.close()  # the child holds the only writer: EOF when it dies
                running[i] = (proc, receive, time.monotonic() + timeout_s)
            now = time.monotonic()
            next_deadline = min(d for _, _, d in running.values())
            ready = set(wait([c for _, c, _ in running.values()], timeout=max(0.0, next_deadline - now)))
            for i, (proc, conn, deadline) in list(running.items()):
                if conn in ready:
                    try:
                        outcome = conn.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        code = proc.exitcode
                        why = (f"killed by signal {-code}" if code is not None and code < 0
                               else f"exited with status {code}")
                        outcome = Failure(CRASHED, f"the grading process died ({why})")
                    conn.close()
                    proc.join(5)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
                    del running[i]
                    finish(i, outcome)
                elif time.monotonic() >= deadline:
                    proc.kill()
                    proc.join()
                    conn.close()
                    del running[i]
                    finish(i, Failure(TIMEOUT, f"took longer than the limit of {timeout_s:g} s; stopped"))
    finally:
        for proc, conn, _ in running.values():  # Ctrl-C or a bug in the parent: leave no child behind
            proc.kill()
            proc.join()
            conn.close()
        _stop_server(ctx)
    return outcomes


def _stop_server(ctx) -> None:
    """Stop the fork server now rather than a moment after we exit (it would outlive the command)."""
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver, resource_tracker

    # CPython's own stoppers (used by its tests); the resource tracker comes with the server.
    for server in (forkserver._forkserver, resource_tracker._resource_tracker):
        stop = getattr(server, "_stop", None)
        if stop is not None:
            try:
                stop()
            except OSError:
                pass


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
