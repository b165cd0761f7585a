"""The build/ folder: its layout, atomic writes, the result.json schema, and the run lock.

Layout (everything generated, git-ignored)::

    build/data/               canonical uint8 data sets (datasets.py)
    build/features/           cached HOG features (features.py)
    build/runs/<name>/        result.json, history.csv, run.log   (full runs)
    build/quick/runs/<name>/  the same for --quick smoke runs (never mixed with full runs)
    build/figures/            PNG/SVG written by figures.py
    build/report.html, build/report.pdf, build/results.json

A result is *fresh* when its ``cache_key`` equals the spec's current key and its status
is final (``ok`` or ``diverged``); anything else -- missing, unreadable, half-written,
another schema, ``failed`` -- is simply stale, never an error (pelican-style cache).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterator

RESULT_SCHEMA = 1
FINAL_STATUSES = ("ok", "diverged")  # "failed" is retried on the next run


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole, or not at all.

    Written as a temp file in the same folder, fsynced, then ``os.replace``d: readers see
    the old or the new content, never half of it. Not mkstemp: its 0600 mode would survive
    the rename; ``os.open(..., 0o666)`` honours the umask like any other file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n")


def runs_dir(build: Path, quick: bool = False) -> Path:
    return Path(build) / ("quick/runs" if quick else "runs")


def run_dir(build: Path, name: str, quick: bool = False) -> Path:
    return runs_dir(build, quick) / name


def read_result(build: Path, name: str, quick: bool = False) -> dict | None:
    """The stored result of ``name``, or None if missing or unusable (a cache miss)."""
    path = run_dir(build, name, quick) / "result.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != RESULT_SCHEMA or data.get("name") != name:
        return None
    if data.get("status") not in ("ok", "diverged", "failed"):
        return None
    return data


def is_fresh(result: dict | None, cache_key: str) -> bool:
    return bool(result) and result.get("cache_key") == cache_key and result.get("status") in FINAL_STATUSES


def history_csv(history: dict[str, list[float]]) -> str:
    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *keys])
    for i in range(n):
        w.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys)])
    return buf.getvalue()


def write_result(build: Path, result: dict, quick: bool = False) -> Path:
    """Store one experiment's result (result.json last, so its presence means complete)."""
    folder = run_dir(build, result["name"], quick)
    if result.get("history"):
        write_text_atomic(folder / "history.csv", history_csv(result["history"]))
    path = folder / "result.json"
    write_json_atomic(path, {"schema": RESULT_SCHEMA, **result})
    return path


class BuildLocked(Exception):
    """Another labreport process holds build/.lock."""


class BuildLock:
    """An exclusive, non-blocking lock on build/ for the commands that write runs.

    flock is released by the kernel when the process dies (even on SIGKILL), so a stale
    lock file never blocks the next run.
    """

    def __init__(self, build: Path):
        self.path = Path(build) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "BuildLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise BuildLocked(
                    f"{self.path.parent}/ is in use by another labreport process (pid {holder});"
                    " wait for it to finish or stop it"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
