"""Stored results: atomic writes, the result.json schema, the run lock, and the marker that
lets ``clean`` delete only what labreport created.

Where things live under build/ is :class:`labreport.results.layout.BuildLayout`'s job; the
marker ``build/.labreport-build`` says the folder is labreport's (see OWNED_NAMES, clean_build).
A stored result is read back as a dict, or None when it is missing, unreadable,
half-written, of another schema or another experiment's: a cache miss, never an error
(pelican-style). Whether it is still up to date is ``staleness.decide``'s job.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from labreport.errors import BuildLocked, UserError
from labreport.results.layout import BuildLayout

RESULT_SCHEMA = 1
FINAL_STATUSES = ("ok", "diverged")  # "failed" is retried on the next run
STATUSES = ("ok", "diverged", "failed")


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
    return BuildLayout(build, quick).runs_dir


def run_dir(build: Path, name: str, quick: bool = False, *, repeat: int = 1) -> Path:
    return BuildLayout(build, quick).run_dir(name, repeat)


def result_repeat(result: dict) -> int:
    """Which run of its experiment a stored result is (results from before repeats: 1)."""
    return result.get("repeat", 1)


def read_result(build: Path, name: str, quick: bool = False, *, repeat: int = 1) -> dict | None:
    """The stored result of run ``repeat`` of ``name``, or None if missing or unusable (a cache miss)."""
    path = BuildLayout(build, quick).result_path(name, repeat)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != RESULT_SCHEMA or data.get("name") != name:
        return None
    if result_repeat(data) != repeat:  # e.g. a folder copied by hand: another run's numbers
        return None
    if data.get("status") not in STATUSES:
        return None
    return data


def stored_repeats(build: Path, name: str, quick: bool = False) -> list[int]:
    """The repeats r >= 2 of ``name`` with a result.json on disk, sorted (whatever ``repeats``
    says today: lowering it keeps the extra runs, and raising it again reuses them)."""
    folder = BuildLayout(build, quick).run_dir(name)
    try:
        entries = [child.name for child in folder.iterdir()]
    except OSError:
        return []
    found = []
    for entry in entries:
        m = re.fullmatch(r"repeat-([1-9][0-9]{0,5})", entry)
        if m and int(m.group(1)) >= 2 and (folder / entry / "result.json").is_file():
            found.append(int(m.group(1)))
    return sorted(found)


def finite_or_none(value: Any) -> float | None:
    """A strict-JSON float: NaN/inf (a diverged run) and non-numbers become None (null)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def without_non_finite(value: Any) -> tuple[Any, int]:
    """``value`` with NaN/inf floats replaced by None, at any depth, and how many there were."""
    if isinstance(value, float):
        clean = finite_or_none(value)
        return clean, int(clean is None)
    if isinstance(value, dict):
        pairs = [(k, without_non_finite(v)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(value, (list, tuple)):
        items = [without_non_finite(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    return value, 0


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
    """Store one run's result (result.json last, so its presence means complete); its
    ``"repeat"`` (default 1) picks the run's folder."""
    layout = BuildLayout(build, quick)
    repeat = result_repeat(result)
    if result.get("history"):
        write_text_atomic(layout.history_path(result["name"], repeat), history_csv(result["history"]))
    path = layout.result_path(result["name"], repeat)
    write_json_atomic(path, {"schema": RESULT_SCHEMA, **result})
    return path


class BuildLock:
    """An exclusive, non-blocking lock on build/ for the commands that write runs.

    flock is released by the kernel when the process dies (even on SIGKILL), so a stale
    lock file never blocks the next run.
    """

    def __init__(self, build: Path):
        self.path = BuildLayout(build).lock_path
        self.fd: int | None = None

    def __enter__(self) -> "BuildLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        adopt = build_state(self.path.parent) == "adoptable"  # before .lock exists: it is ours either way
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
        if adopt:
            with contextlib.suppress(OSError):  # unwritable: the run's first write says so, by name
                mark_build(self.path.parent)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# --------------------------------------------------------------------------- the build-folder marker
# `clean` deletes folders; it must never delete what labreport did not create. Every build
# folder labreport creates carries MARKER, and `clean` only removes OWNED_NAMES inside it.
MARKER = ".labreport-build"
MARKER_TEXT = ("This folder was created by labreport. `labreport clean` deletes only the names labreport\n"
               "writes here (data, features, runs, quick, figures, report.*, results.json, grades).\n")
# Every top-level name labreport writes under build/. A new output file or folder must be
# added here, or `clean` keeps it and an older folder holding it is no longer adopted.
OWNED_NAMES = frozenset({
    "data", "features", "runs", "quick", "figures", "grades",
    "report.html", "report.pdf", "results.json", ".report.pdf.stamp", ".lock", MARKER,
})
# store.atomic_write's temp files (".NAME.PID.HEX.tmp"), left behind by a killed writer.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.\d+\.[0-9a-f]{8}\.tmp$")


class BuildFolderError(UserError):
    """-b names something labreport must not write into or delete from (exit 2)."""


def _where(option: str, path: Path) -> str:
    """'-b build' for an option, 'LABREPORT_BUILD=build' for an environment variable."""
    return f"{option} {path}" if option.startswith("-") else f"{option}={path}"


def is_owned_name(name: str) -> bool:
    m = _TEMP_NAME.match(name)
    return name in OWNED_NAMES or bool(m and m.group("name") in OWNED_NAMES)


def foreign_entries(build: Path) -> list[str]:
    """The entries of ``build`` that labreport did not create (sorted)."""
    return sorted(child.name for child in Path(build).iterdir() if not is_owned_name(child.name))


# Entries only labreport makes: an unmarked folder holding one of them (and nothing foreign)
# is an older labreport's build folder. A lone data/ counts only if it holds our cache files:
# a project folder with just its own data/ must never be adopted (clean --all would empty it).
SIGNATURE_NAMES = frozenset({".lock", "runs", "quick", "results.json", "report.html", ".report.pdf.stamp"})
# Folders with common names count only when they hold nothing but labreport's own files.
_SIGNATURE_CONTENT = {"data": re.compile(r"^(mnist|fashion)\.npz$"),  # `labreport data`
                      # `labreport grade` (-o build/grades): the table, the class overview, the LMS files
                      "grades": re.compile(r"^(grades\.(csv|html)|overview\.html|overview-figures|moodle\.csv"
                                           r"|students\.csv)$")}


def _looks_like_ours(build: Path) -> bool:
    names = {child.name for child in build.iterdir()}
    if not names or names & SIGNATURE_NAMES:
        return True
    for name, pattern in _SIGNATURE_CONTENT.items():
        folder = build / name
        if folder.is_dir() and not folder.is_symlink():
            entries = [c.name for c in folder.iterdir()]
            if entries and all(pattern.match(n) or _TEMP_NAME.match(n) for n in entries):
                return True
    return False


def build_state(build: Path) -> str:
    """'missing', 'not-a-folder', 'marked', 'adoptable' or 'foreign'.

    A folder made by labreport before the marker existed holds only labreport's names and
    at least one that only labreport makes (SIGNATURE_NAMES, or data/ or grades/ holding only
    labreport's files); it is 'adoptable': marked by the next command that writes there, or
    by `clean`. (`data` and `grade -o build/grades` write without marking.)
    An empty folder is adoptable too. Anything else unmarked is 'foreign'.
    """
    build = Path(build)
    if not build.exists() and not build.is_symlink():
        return "missing"
    if not build.is_dir():
        return "not-a-folder"
    if (build / MARKER).is_file():
        return "marked"
    return "adoptable" if not foreign_entries(build) and _looks_like_ours(build) else "foreign"


def _describe_foreign(build: Path) -> str:
    names = foreign_entries(build)
    if not names:
        return f"only {', '.join(repr(c.name) for c in sorted(build.iterdir())[:5])}, not known as labreport's files"
    shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return shown + ", which labreport did not create"


def mark_build(build: Path) -> None:
    """Write the marker into ``build`` (created if missing) unless it is there already."""
    path = Path(build) / MARKER
    if not path.is_file():
        write_text_atomic(path, MARKER_TEXT)


def _refuse_unusable(build: Path, state: str, option: str, *, if_file: str, if_foreign: str) -> None:
    """BuildFolderError for a path that is a file, or a folder labreport did not make; the
    message ends with what the command advises (or promises) in that case."""
    if state == "not-a-folder":
        raise BuildFolderError(f"{_where(option, build)}: is a file, not a folder; {if_file}")
    if state == "foreign":
        raise BuildFolderError(
            f"{_where(option, build)}: not a labreport build folder (no {MARKER} marker, and it holds "
            f"{_describe_foreign(build)}); {if_foreign}")


def check_build_folder(build: Path, *, option: str = "-b", create: bool = True) -> None:
    """Refuse (BuildFolderError, exit 2) a ``build`` that is a file, unwritable, or a folder
    labreport did not create; create it (marked) when missing. Nothing is deleted or overwritten.

    Every command that writes under build/ calls this first, so a mistyped ``-b .`` or
    ``LABREPORT_BUILD=src`` fails before anything is written there. ``create=False``: a
    missing folder is left to be made by the command's first write and an unmarked one is
    not marked (``data`` that finds nothing leaves nothing).
    """
    build = Path(build)
    state = build_state(build)
    _refuse_unusable(build, state, option, if_file="name a build folder (default: build)",
                     if_foreign="name a new or empty folder")
    if state == "missing" and not create:
        parent = next((p for p in build.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise BuildFolderError(f"{_where(option, build)}: a part of this path is a file, not a folder")
        return  # made (unmarked, adoptable) by the first file written there
    if state == "missing":
        try:
            build.mkdir(parents=True)
        except FileExistsError:
            raise BuildFolderError(f"{_where(option, build)}: a part of this path is a file, not a folder") from None
        except NotADirectoryError:
            raise BuildFolderError(f"{_where(option, build)}: a part of this path is a file, not a folder") from None
        except OSError as e:
            raise BuildFolderError(f"{_where(option, build)}: cannot create the folder ({e.strerror})") from None
    check_writable(build, option=option)
    if state != "marked" and create:
        try:
            mark_build(build)
        except OSError as e:
            raise BuildFolderError(f"{_where(option, build)}: cannot write into the folder ({e.strerror})") from None


def check_writable(folder: Path, *, option: str) -> None:
    """Prove ``folder`` takes new files by creating and removing one (os.access lies to root)."""
    probe = Path(folder) / f".labreport-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise BuildFolderError(f"{_where(option, folder)}: the folder is not writable ({e.strerror})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def output_folder(folder: Path, *, option: str) -> Path:
    """A folder other commands write into (e.g. ``grade -o``): created if missing; a file,
    a path through a file or an unwritable folder is a BuildFolderError naming ``option``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BuildFolderError(f"{_where(option, folder)}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BuildFolderError(f"{_where(option, folder)}: a part of this path is a file, not a folder") from None
    except OSError as e:
        raise BuildFolderError(f"{_where(option, folder)}: cannot create the folder ({e.strerror})") from None
    check_writable(folder, option=option)
    return folder


def clean_build(build: Path, *, keep: frozenset[str] | set[str] = frozenset(), option: str = "-b") -> list[Path]:
    """Delete the labreport-owned entries of ``build`` except ``keep``; return what was removed.

    Refuses (BuildFolderError) a file or a folder that is neither marked nor made only of
    labreport's names. Symlinks are unlinked, never followed. Holds the build lock.
    """
    build = Path(build)
    state = build_state(build)
    if state == "missing":
        return []
    _refuse_unusable(build, state, option, if_file="nothing was deleted", if_foreign="nothing was deleted")
    removed = []
    with BuildLock(build):  # never delete under a running `run`
        for child in sorted(build.iterdir()):
            name = child.name
            if not is_owned_name(name) or name in keep or name in (".lock", MARKER):
                continue
            try:
                if child.is_symlink() or not child.is_dir():
                    child.unlink()
                else:
                    shutil.rmtree(child)
            except OSError as e:
                raise BuildFolderError(f"{_where(option, build)}: cannot delete {name} ({e.strerror});"
                                       f" removed so far: {len(removed)}") from None
            removed.append(child)
    return removed
