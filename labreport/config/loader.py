"""experiments.toml -> validated, fully resolved :class:`LabConfig` (pure, no TensorFlow).

Validation collects *every* problem before giving up, each as one line
``FILE:LINE: experiment 'NAME': MESSAGE`` (mkdocs/dvc style), so a student fixes the
whole file in one go. Resolution order for one experiment: ``[defaults]`` < the
experiment named by ``from`` (recursively) < the experiment's own keys. ``[[sweep]]``
tables take a resolved experiment and vary some keys over a Cartesian product.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import math
import os
import re
import string
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from labreport.config.param_counts import breakdown, shape_problem
from labreport.config.spec import (
    ACTIVATIONS,
    DATASETS,
    IMAGE_SIDE,
    OPTIMIZERS,
    PARTS,
    ConvSpec,
    ExperimentSpec,
    HogSpec,
    LabConfig,
    OptimizerSpec,
    ReportMeta,
    Requirements,
    group_seed,
)
from labreport.errors import ConfigError, UnknownExperiment

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# --------------------------------------------------------------------------- limits
# Everything a config (a student's, or one attached to a PDF being graded) can make labreport
# allocate or compute is bounded here, once; each message states the limit it broke.
MAX_CONFIG_BYTES = 1_000_000  # the reference lab is ~3 kB
MAX_NESTING = 32  # [ and { nesting, and the segments of one dotted key (tomllib recurses on both)
MAX_NUMBER_DIGITS = 30  # TOML integers are 64-bit (19 digits); Python would parse 4,300-digit ones
MAX_NAME_CHARS = 100  # names become folder and file names (255 bytes at most on common file systems)
MAX_TEXT_CHARS = 20_000  # a comment, the title, an author...
MAX_AUTHORS = 100
MAX_LAYER_UNITS = 1_000_000  # one hidden layer; the memory bound below is the real limit
MAX_HIDDEN_LAYERS = 64
MAX_CONV_LAYERS = 32
MAX_FROM_CHAIN = 64  # `from` links followed from one experiment (resolved recursively)
MAX_ERRORS_SHOWN = 100  # a file of 80,000 unknown keys gets 100 lines and a count, not 80,000 lines
DEFAULT_MAX_EXPERIMENTS = 1_000  # runs, after sweeps and repeats; LABREPORT_MAX_EXPERIMENTS changes it
MAX_REPEATS = 20  # runs of one experiment (`repeats`); the spread of 20 seeds is well measured
MAX_EXPERIMENTS_VAR = "LABREPORT_MAX_EXPERIMENTS"
# Training memory of one model, roughly: float32 weights, their gradients and two optimizer
# slots (16 bytes per parameter) plus one float32 per activation value of a batch.
BYTES_PER_PARAM = 16
BYTES_PER_ACTIVATION = 4


# --------------------------------------------------------------------------- checks
# A check takes a value and returns an error message (without context) or None.

Check = Callable[[Any], "str | None"]


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(v), type(v).__name__)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not _is_int(v):
            return f"expected an integer, got {_type_name(v)} ({_short(v)})"
        if lo is not None and v < lo:
            return f"must be >= {lo}, got {v}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {v}"
        return None

    return check


def _float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected a number, got {_type_name(v)} ({_short(v)})"
        if v != v or v in (float("inf"), float("-inf")):
            return f"must be a finite number, got {v}"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi:g}, got {v:g}"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, got {_type_name(v)} ({_short(v)})"


def _str(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {_type_name(v)} ({_short(v)})"
    if len(v) > MAX_TEXT_CHARS:
        return f"{len(v):,} characters long; at most {MAX_TEXT_CHARS:,}"
    return None


def _short(v: Any, limit: int = 60) -> str:
    """repr(v), cut: messages stay one short line whatever the input."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _choice(options: tuple[str, ...] | list[str]) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"expected a string, got {_type_name(v)} ({_short(v)})"
        if v not in options:
            return f"expected one of: {', '.join(options)}; got {_short(v)}" + _suggest(v, options)
        return None

    return check


def _name(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {_type_name(v)} ({_short(v)})"
    if len(v) > MAX_NAME_CHARS:
        return (f"{_short(v)} is {len(v):,} characters long; names are at most {MAX_NAME_CHARS}"
                " (they become file names)")
    if not NAME_RE.match(v):
        return f"{_short(v)} is not a valid name (letters, digits, '.', '_', '-'; no spaces)"
    return None


def _hidden(v: Any) -> str | None:
    items = v if isinstance(v, list) else [v]
    if len(items) > MAX_HIDDEN_LAYERS:
        return f"{len(items)} hidden layers; at most {MAX_HIDDEN_LAYERS}"
    for item in items:
        if not _is_int(item):
            return f"expected an integer or an array of integers, got {_type_name(item)} ({_short(item)})"
        if item < 1:
            return f"layer sizes must be >= 1, got {item}"
        if item > MAX_LAYER_UNITS:
            return f"layer sizes must be <= {MAX_LAYER_UNITS:,}, got {item:,}"
    return None


def select(config: LabConfig, names: Sequence[str] | None = None) -> list[ExperimentSpec]:
    """The experiments named by ``names`` (exact names or shell patterns like 'hog-*'), in config
    order; every name that matches nothing is named in one UnknownExperiment (with a guess)."""
    if not names:
        return list(config.experiments)
    known = [s.name for s in config.experiments]
    unknown = [n for n in names if not any(fnmatch.fnmatchcase(k, n) for k in known)]
    if unknown:
        raise UnknownExperiment("; ".join(f"no experiment named {n!r} in {config.path}" + _suggest(n, known)
                                          for n in unknown))
    return [s for s in config.experiments if any(fnmatch.fnmatchcase(s.name, n) for n in names)]


def _suggest(word: str, options) -> str:
    if len(word) > MAX_NAME_CHARS:  # no key or name is that long: nothing close to suggest
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


EXPERIMENT_KEYS: dict[str, Check] = {
    "name": _name,
    "part": _choice(PARTS),
    "from": _str,
    "dataset": _choice(DATASETS),
    "hidden": _hidden,
    "activation": _choice(ACTIVATIONS),
    "dropout": _float(0.0, 1.0, hi_open=True),
    "batch_size": _int(1, 1_000_000),
    "epochs": _int(1, 100_000),
    "seed": _int(0, 2**31 - 1),
    "repeats": _int(1, MAX_REPEATS),
    "optimizer": lambda v: None if isinstance(v, dict) else f"expected a table, got {_type_name(v)}",
    "hog": lambda v: None if isinstance(v, dict) else f"expected a table, got {_type_name(v)}",
    "conv": lambda v: (f"{len(v)} conv layers; at most {MAX_CONV_LAYERS}" if len(v) > MAX_CONV_LAYERS else None)
    if isinstance(v, list) and all(isinstance(x, dict) for x in v)
    else f"expected an array of tables, got {_type_name(v)}",
    "chosen": _bool,
    "comment": _str,
}
REQUIRED = ("name", "part", "hidden", "activation", "batch_size", "epochs")
NOT_INHERITED = ("name", "from", "chosen", "comment")  # never taken from [defaults] or `from`
HOG_KEYS: dict[str, Check] = {
    "pixels_per_cell": _int(1, IMAGE_SIDE),
    "orientations": _int(1, 360),
}
CONV_KEYS: dict[str, Check] = {
    "filters": _int(1, 4096),
    "kernel": _int(1, IMAGE_SIDE),
    "activation": _choice(ACTIVATIONS),
    "padding": _choice(("same", "valid")),
    "pool": _int(0, IMAGE_SIDE),
}
OPTIMIZER_ARG_CHECKS: dict[str, Check] = {
    "learning_rate": _float(0.0, 10.0, lo_open=True),
    "rho": _float(0.0, 1.0, hi_open=True),
    "momentum": _float(0.0, 1.0, hi_open=True),
    "epsilon": _float(0.0, 1.0, lo_open=True),
    "centered": _bool,
    "beta_1": _float(0.0, 1.0, hi_open=True),
    "beta_2": _float(0.0, 1.0, hi_open=True),
    "amsgrad": _bool,
    "nesterov": _bool,
}
REPORT_KEYS: dict[str, Check] = {
    "title": _str,
    "authors": lambda v: _authors(v),
    "course": _str,
    "group": _str,
    "date": _str,
}
REQUIREMENT_KEYS: dict[str, Check] = {
    "min_variants_per_part": _int(1, 1000),
    "parts": lambda v: None if isinstance(v, list) and all(p in PARTS for p in v)
    else f"expected an array of parts among: {', '.join(PARTS)}",
    "chosen_per_part": _bool,
    "no_failed": _bool,
    "no_quick": _bool,
}
SWEEP_KEYS = ("from", "vary", "name", "comment")
# [grading] is the teacher's rubric: read and checked by `labreport grade --rubric` (grading/rubric.py).
TOP_KEYS = ("report", "defaults", "experiment", "sweep", "requirements", "grading")


def _authors(v: Any) -> str | None:
    """authors = ["Ada", { name = "Alan", id = "a.turing@example.org" }]: names, optionally with an id."""
    if not isinstance(v, list):
        return f"expected an array of names or {{ name = ..., id = ... }} tables, got {_type_name(v)}"
    if len(v) > MAX_AUTHORS:
        return f"{len(v)} authors; at most {MAX_AUTHORS}"
    for i, a in enumerate(v, 1):
        if isinstance(a, str):
            if _str(a):
                return f"author {i}: {_str(a)}"
            continue
        if not isinstance(a, dict):
            return f"author {i}: expected a string or a {{ name = ..., id = ... }} table, got {_type_name(a)}"
        unknown = [k for k in a if k not in ("name", "id")]
        if unknown:
            return f"author {i}: unknown key {unknown[0]!r} (expected 'name' and 'id')" + _suggest(unknown[0], ("name", "id"))
        if not isinstance(a.get("name"), str) or not a["name"].strip():
            return f"author {i}: 'name' must be a non-empty string"
        if "id" in a and not (isinstance(a["id"], str) or _is_int(a["id"])):
            return f"author {i}: 'id' must be a string, got {_type_name(a['id'])}"
        for key in ("name", "id"):
            if isinstance(a.get(key), str) and _str(a[key]):
                return f"author {i}: '{key}': {_str(a[key])}"
    return None


# --------------------------------------------------------------------------- line index
class _Lines:
    """Where each table and key was written: tomllib keeps no positions, so we scan the text.

    Good enough for messages: the n-th ``[[experiment]]`` header and ``key =`` lines until
    the next header. Keys of inline tables point at their parent key's line.
    """

    HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"^\s*([A-Za-z0-9_\"'-]+)(\s*\.\s*[A-Za-z0-9_\"'-]+)*\s*=")

    def __init__(self, text: str):
        self.tables: dict[str, list[tuple[int, dict[str, int]]]] = {}
        current: dict[str, int] | None = None
        in_string: str | None = None  # the delimiter of a multi-line string we are inside
        for lineno, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            for delim in ('"""', "'''"):
                if line.count(delim) % 2 == 1:
                    in_string = delim
            m = self.HEADER.match(line)
            if m:
                current = {}
                self.tables.setdefault(m.group(1).strip().strip("\"'"), []).append((lineno, current))
                continue
            k = self.KEY.match(line)
            if k and current is not None:
                current.setdefault(k.group(1).strip("\"'"), lineno)

    def table(self, name: str, index: int = 0) -> tuple[int, dict[str, int]]:
        found = self.tables.get(name, [])
        return found[index] if index < len(found) else (0, {})


# --------------------------------------------------------------------------- loading
class _Collector:
    def __init__(self, path: str):
        self.path = path
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, context: str, msg: str) -> None:
        where = f"{self.path}:{line}" if line else self.path
        self.items.append((line, f"{where}: {context + ': ' if context else ''}{msg}"))

    def raise_if_any(self) -> None:
        if self.items:
            seen: set[str] = set()
            lines = []
            for _, text in sorted(self.items, key=lambda t: t[0]):
                if text not in seen:
                    seen.add(text)
                    lines.append(text)
            total = len(lines)
            if total > MAX_ERRORS_SHOWN:
                lines = lines[:MAX_ERRORS_SHOWN] + [f"{self.path}: ... and {total - MAX_ERRORS_SHOWN:,} more errors"]
            raise ConfigError(lines, total)


def _check_table(table: dict, schema: dict[str, Check], errs: _Collector, line_of: Callable[[str], int],
                 context: str, prefix: str = "") -> dict:
    """Check the keys present in ``table``; return the subset that passed."""
    good = {}
    for key, value in table.items():
        label = f"{prefix}{key}"
        if key not in schema:
            # "did you mean" costs a difflib pass; past the lines that will be shown, only count.
            hint = _suggest(key, schema) if len(errs.items) < MAX_ERRORS_SHOWN else ""
            errs.add(line_of(key), context, f"unknown key {_short(label)}" + hint)
            continue
        problem = schema[key](value)
        if problem:
            errs.add(line_of(key), context, f"key {_short(label)}: {problem}")
        else:
            good[key] = value
    return good


def load(path: str | Path, *, max_experiments: int | None = None) -> LabConfig:
    """Read, validate and resolve ``path``; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    label = path.name if path.parent == Path(".") else str(path)
    try:
        if path.is_dir():
            raise ConfigError([f"{label}: is a folder; name the experiments file (e.g. -c experiments.toml)"])
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # never more: a huge or endless file (/dev/zero) is refused
    except FileNotFoundError:
        hint = ""
        if not path.is_absolute():  # the newcomer's case: a command run from another folder
            hint = f" in {Path.cwd()} (run labreport from the project folder, or pass -c PATH)"
        raise ConfigError([f"{label}: no such file{hint}"]) from None
    except OSError as e:
        raise ConfigError([f"{label}: cannot read: {e.strerror or e}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{label}: larger than {MAX_CONFIG_BYTES:,} bytes; an experiments file is a few kB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{label}: cannot read: {e}"]) from None
    return loads(text, label, max_experiments=max_experiments)


def max_experiments_default() -> int:
    """The limit on experiments after sweeps: LABREPORT_MAX_EXPERIMENTS, else DEFAULT_MAX_EXPERIMENTS."""
    from labreport import env

    return env.get(MAX_EXPERIMENTS_VAR, DEFAULT_MAX_EXPERIMENTS)


def _text_problem(text: str) -> tuple[int, str] | None:
    """(line, what) where ``text`` nests deeper than MAX_NESTING or writes a number longer than
    MAX_NUMBER_DIGITS, else None.

    Checked on the text, before tomllib: it recurses once per level (a RecursionError), spends
    quadratic time and memory on long dotted keys (``a.a.a...`` of 200 kB never ends) and
    turns any run of digits into a Python int. Strings and comments are skipped; a run of dots
    outside them counts as key segments.
    """
    depth, dots, digits, line, i, n = 0, 0, 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c.isdigit() or (c == "_" and digits):
            digits += 1
            if digits > MAX_NUMBER_DIGITS:
                return line, f"a number with more than {MAX_NUMBER_DIGITS} digits"
            i += 1
            continue
        digits = 0
        if c == "\n":
            line += 1
            dots = 0
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n:
                if text.startswith(quote, j):
                    break
                if c == '"' and text[j] == "\\":
                    j += 1
                elif text[j] == "\n":
                    if len(quote) == 1:
                        break  # an unclosed one-line string: tomllib reports it
                    line += 1
                j += 1
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line, f"nested deeper than {MAX_NESTING} levels of [ and {{"
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == ".":
            dots += 1
            if dots >= MAX_NESTING:
                return line, f"a dotted key with more than {MAX_NESTING} parts"
        elif c in "=,":
            dots = 0
        i += 1
    return None


def loads(text: str, path: str = "experiments.toml", *, max_experiments: int | None = None) -> LabConfig:
    if text.startswith("\ufeff"):
        raise ConfigError([f"{path}:1: the file starts with a UTF-8 byte-order mark (BOM), which TOML does not"
                           " allow; save it as UTF-8 without BOM"])
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; an experiments file is a few kB"])
    deep = _text_problem(text)
    if deep:
        raise ConfigError([f"{path}:{deep[0]}: {deep[1]}"])
    try:
        data = tomllib.loads(text)
    except RecursionError:  # the pre-check should make this unreachable; never a traceback
        raise ConfigError([f"{path}: nested too deeply to parse"]) from None
    except tomllib.TOMLDecodeError as e:
        _syntax_error(e, text, path)
    except ValueError as e:  # e.g. Python's int-size limit, raised by tomllib outside TOMLDecodeError
        raise ConfigError([f"{path}: TOML value error: {e}"]) from None
    return _validate(data, text, path, max_experiments)


def _syntax_error(e: Exception, text: str, path: str) -> None:
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
    msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
    if m:
        where = f"{path}:{m.group(1)}:{m.group(2)}"
    else:  # "at end of document": point at the last line
        where = f"{path}:{max(1, len(text.splitlines()))}"
        msg += " (at end of file)"
    raise ConfigError([f"{where}: TOML syntax error: {msg}"]) from None


def _validate(data: dict, text: str, path: str, max_experiments: int | None) -> LabConfig:
    errs = _Collector(path)
    lines = _Lines(text)
    limit = max_experiments_default() if max_experiments is None else max_experiments

    if not data:
        errs.add(0, "", "the file declares nothing; add at least one [[experiment]] table")
        errs.raise_if_any()
    for key in data:
        if key not in TOP_KEYS:
            line = lines.table(key)[0]
            errs.add(line, "", f"unknown table {_short(key)}" + _suggest(key, TOP_KEYS))

    report = _load_meta(data.get("report", {}), "report", REPORT_KEYS, ReportMeta, "authors", errs, lines)
    requirements = _load_meta(data.get("requirements", {}), "requirements", REQUIREMENT_KEYS, Requirements,
                              "parts", errs, lines)
    defaults = _load_defaults(data.get("defaults", {}), errs, lines)
    if "seed" not in defaults and report.group.strip():
        # No seed anywhere: each group trains from its own seed (printed in every card), so
        # independent runs of the same config differ; a teacher may assign one instead.
        defaults["seed"] = group_seed(report.group)

    raw_experiments = data.get("experiment", [])
    if not isinstance(raw_experiments, list):
        errs.add(lines.table("experiment")[0], "", "'experiment' must be an array of tables: write [[experiment]]")
        raw_experiments = []
    if not raw_experiments:
        errs.add(0, "", "no experiments: add at least one [[experiment]] table")
    if len(raw_experiments) > limit:
        errs.add(lines.table("experiment")[0], "", f"{len(raw_experiments):,} [[experiment]] tables; the limit is"
                 f" {limit:,} experiment{'s' * (limit != 1)} in all (set {MAX_EXPERIMENTS_VAR} to change it)")
        errs.raise_if_any()

    # First pass: each experiment's own keys, checked; remember where it was declared.
    own: dict[str, tuple[dict, int, Callable[[str], int]]] = {}
    invalid: dict[str, set[str]] = {}
    order: list[str] = []
    folded: dict[str, str] = {}  # casefolded name -> name
    for i, table in enumerate(raw_experiments):
        line, keys = lines.table("experiment", i)
        line_of = _line_lookup(line, keys)
        name = table.get("name")
        context = f"experiment {_short(name)}" if isinstance(name, str) else f"experiment #{i + 1}"
        good = _check_table(table, EXPERIMENT_KEYS, errs, line_of, context)
        if "name" not in table:
            errs.add(line, context, "missing required key 'name'")
            continue
        if "name" not in good:
            continue
        if name in own:
            errs.add(line, context, f"duplicate name {name!r} (first declared at line {own[name][1]})")
            continue
        twin = folded.get(name.casefold())
        if twin is not None:  # build/runs/NAME: one folder for both on macOS and Windows
            errs.add(line, context, f"name {name!r} differs from {twin!r} (line {own[twin][1]}) only by case;"
                     " their results would share a folder on macOS and Windows")
            continue
        folded[name.casefold()] = name
        own[name] = (good, line, line_of)
        invalid[name] = set(table) - set(good)
        order.append(name)

    resolved: dict[str, dict] = {}
    unresolvable: set[str] = set()  # reported once, not again by each experiment inheriting it

    def resolve(name: str, stack: tuple[str, ...] = ()) -> dict | None:
        if name in resolved:
            return resolved[name]
        if name in unresolvable:
            return None
        table, line, line_of = own[name]
        context = f"experiment {name!r}"
        base: dict = {}
        parent = table.get("from")
        if parent is not None:
            if len(stack) >= MAX_FROM_CHAIN:
                errs.add(line_of("from"), context, f"key 'from': a chain of more than {MAX_FROM_CHAIN} 'from' links")
                unresolvable.update(stack + (name,))
                return None
            if parent in stack or parent == name:
                cycle = stack[stack.index(parent):] if parent in stack else ()
                errs.add(line_of("from"), context,
                         f"key 'from': circular inheritance ({' -> '.join(cycle + (name, parent))})")
                unresolvable.update(cycle + (name,))
                return None
            if parent not in own:
                errs.add(line_of("from"), context, f"key 'from': no experiment named {_short(parent)}" + _suggest(parent, own))
                unresolvable.add(name)
                return None
            got = resolve(parent, stack + (name,))
            if got is None:
                unresolvable.add(name)
                return None
            base = {k: v for k, v in got.items() if k not in NOT_INHERITED}
        merged = _merge(_merge(dict(defaults), base), table)
        resolved[name] = merged
        return merged

    specs: list[ExperimentSpec] = []
    for name in order:
        merged = resolve(name)
        if merged is None:
            continue
        table, line, line_of = own[name]
        spec = _build_spec(merged, line, line_of, f"experiment {name!r}", errs, invalid[name])
        if spec:
            specs.append(spec)
    # The limit counts runs (each experiment once, plus its extra repeats), before any is made.
    n_runs = len(own) + sum(spec.repeats - 1 for spec in specs)
    if n_runs > limit:  # said once, at the experiment where the count crosses the limit
        counted = len(own)
        for spec in specs:
            counted += spec.repeats - 1
            if counted > limit:
                errs.add(own[spec.name][2]("repeats"), f"experiment {spec.name!r}",
                         f"key 'repeats': {len(own):,} experiment{'s with their' if len(own) != 1 else ' with its'}"
                         f" repeats make{'s' * (len(own) == 1)} {n_runs:,} runs; the limit is {limit:,}"
                         f" run{'s' * (limit != 1)} in all (experiments x repeats; set {MAX_EXPERIMENTS_VAR}"
                         " to change it)")
                break

    specs.extend(_expand_sweeps(data.get("sweep", []), resolved, own, defaults, errs, lines, {s.name for s in specs},
                                limit, planned=n_runs))
    specs.sort(key=lambda s: s.line)  # sweep variants stand where the sweep is declared
    _check_chosen(specs, errs)
    errs.raise_if_any()
    return LabConfig(path=path, report=report, experiments=tuple(specs), requirements=requirements,
                     source_text=text)


def _line_lookup(header_line: int, keys: dict[str, int]) -> Callable[[str], int]:
    return lambda key: keys.get(key.split(".")[0], header_line)


def _merge(base: dict, over: dict) -> dict:
    """Shallow merge; the ``optimizer`` table merges key by key unless the name changes."""
    out = dict(base)
    for k, v in over.items():
        if k == "optimizer" and isinstance(v, dict) and isinstance(out.get(k), dict):
            inherited = out[k]
            same = v.get("name", inherited.get("name")) == inherited.get("name")
            out[k] = {**inherited, **v} if same else dict(v)
        else:
            out[k] = v
    return out


def _load_meta(table: Any, name: str, schema: dict[str, Check], cls: type, list_key: str,
               errs: _Collector, lines: _Lines):
    """[report] or [requirements]: a flat table of known keys -> ``cls`` (arrays become tuples)."""
    line, keys = lines.table(name)
    if not isinstance(table, dict):
        errs.add(line, "", f"'{name}' must be a table: write [{name}]")
        return cls()
    good = _check_table(table, schema, errs, _line_lookup(line, keys), f"[{name}]")
    if list_key in good:
        good[list_key] = tuple(good[list_key])
    if cls is ReportMeta and "authors" in good:  # names for printing, ids for the LMS export
        authors = good["authors"]
        good["authors"] = tuple(a if isinstance(a, str) else a["name"] for a in authors)
        good["author_ids"] = tuple("" if isinstance(a, str) else str(a.get("id", "")) for a in authors)
    return cls(**good)


def _load_defaults(table: Any, errs: _Collector, lines: _Lines) -> dict:
    line, keys = lines.table("defaults")
    if not isinstance(table, dict):
        errs.add(line, "", "'defaults' must be a table: write [defaults]")
        return {}
    line_of = _line_lookup(line, keys)
    for key in NOT_INHERITED:
        if key in table:
            errs.add(line_of(key), "[defaults]", f"key {_short(key)} cannot have a default (it belongs to one experiment)")
    table = {k: v for k, v in table.items() if k not in NOT_INHERITED}
    good = _check_table(table, EXPERIMENT_KEYS, errs, line_of, "[defaults]")
    # Nested tables are checked here once, not once per experiment that inherits them.
    for key, checker in (("optimizer", _check_optimizer), ("hog", _check_hog), ("conv", _check_conv)):
        if key in good and checker(good[key], errs, line_of(key), "[defaults]") is None:
            del good[key]
    return good


# --------------------------------------------------------------------------- building
def _check_optimizer(table: dict, errs: _Collector, line: int, context: str) -> OptimizerSpec | None:
    name = table.get("name", "rmsprop")
    problem = _choice(tuple(OPTIMIZERS))(name)
    if problem:
        errs.add(line, context, f"key 'optimizer.name': {problem}")
        return None
    known = OPTIMIZERS[name]
    args = dict(known)
    ok = True
    for key, value in table.items():
        if key == "name":
            continue
        if key not in known:
            errs.add(line, context, f"unknown key 'optimizer.{key}' for {name}" + _suggest(key, known)
                     + f"; {name} takes: {', '.join(known)}")
            ok = False
            continue
        problem = OPTIMIZER_ARG_CHECKS[key](value)
        if problem:
            errs.add(line, context, f"key 'optimizer.{key}': {problem}")
            ok = False
        else:
            args[key] = float(value) if isinstance(known[key], float) else value
    return OptimizerSpec(name, tuple(sorted(args.items()))) if ok else None


def _check_hog(table: dict, errs: _Collector, line: int, context: str) -> HogSpec | None:
    ok = _check_nested(table, HOG_KEYS, errs, line, context, "hog.")
    for key in HOG_KEYS:
        if key not in table:
            errs.add(line, context, f"missing required key 'hog.{key}'")
            ok = False
    return HogSpec(**table) if ok else None


def _check_conv(items: list, errs: _Collector, line: int, context: str) -> tuple[ConvSpec, ...] | None:
    ok = True
    convs = []
    for i, table in enumerate(items, 1):
        prefix = f"conv[{i}]."
        if not _check_nested(table, CONV_KEYS, errs, line, context, prefix):
            ok = False
            continue
        missing = [k for k in ("filters", "kernel") if k not in table]
        for k in missing:
            errs.add(line, context, f"missing required key '{prefix}{k}'")
        if missing:
            ok = False
            continue
        convs.append(ConvSpec(**table))
    return tuple(convs) if ok else None


def _check_nested(table: dict, schema: dict[str, Check], errs: _Collector, line: int, context: str,
                  prefix: str) -> bool:
    before = len(errs.items)
    _check_table(table, schema, errs, lambda _k: line, context, prefix)
    return len(errs.items) == before


def _build_spec(m: dict, line: int, line_of: Callable[[str], int], context: str,
                errs: _Collector, invalid: set[str] = frozenset()) -> ExperimentSpec | None:
    """Build one spec from merged keys; ``invalid``: keys present but already reported bad."""
    before = len(errs.items)
    missing = [k for k in REQUIRED if k not in m and k not in invalid]
    if missing:
        keys = ", ".join(repr(k) for k in missing)
        errs.add(line, context, f"missing required key{'s' * (len(missing) > 1)} {keys}")
    if missing or any(k in invalid for k in REQUIRED):
        return None
    opt = _check_optimizer(m.get("optimizer", {}), errs, line_of("optimizer"), context)
    hog = _check_hog(m["hog"], errs, line_of("hog"), context) if "hog" in m else None
    conv = _check_conv(m["conv"], errs, line_of("conv"), context) if "conv" in m else ()
    if len(errs.items) > before:
        return None
    part = m["part"]
    if hog and conv:
        errs.add(line_of("hog"), context, "an experiment has either 'hog' features or a 'conv' stack, not both")
    if part == "hog" and not hog:
        errs.add(line_of("part"), context, "part 'hog' needs a 'hog' table, e.g. hog = { pixels_per_cell = 4, orientations = 8 }")
    if part in ("raw", "hog") and conv:
        errs.add(line_of("conv"), context, f"part {part!r} is an MLP part; a 'conv' stack belongs to part 'cnn' or 'fashion'")
    hidden = m["hidden"]
    spec = ExperimentSpec(
        name=m["name"],
        part=part,
        dataset=m.get("dataset", "fashion" if part == "fashion" else "mnist"),
        hidden=tuple(hidden) if isinstance(hidden, list) else (hidden,),
        activation=m["activation"],
        dropout=float(m.get("dropout", 0.0)),
        batch_size=m["batch_size"],
        epochs=m["epochs"],
        optimizer=opt,
        seed=m.get("seed", 1),
        repeats=m.get("repeats", 1),
        hog=hog,
        conv=conv or (),
        chosen=m.get("chosen", False),
        comment=m.get("comment", ""),
        line=line,
    )
    if hog and hog.pixels_per_cell > IMAGE_SIDE:
        errs.add(line_of("hog"), context, f"key 'hog.pixels_per_cell': larger than the {IMAGE_SIDE}x{IMAGE_SIDE} image")
    problem = shape_problem(spec)
    if problem:
        errs.add(line_of("conv"), context, f"key 'conv': {problem}")
    if len(errs.items) > before:
        return None
    problem = memory_problem(spec)
    if problem:
        errs.add(line_of("hidden"), context, problem)
        return None
    return spec


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def training_bytes(spec: ExperimentSpec) -> tuple[int, int]:
    """(parameters, rough bytes to train ``spec``): see BYTES_PER_PARAM and BYTES_PER_ACTIVATION."""
    b = breakdown(spec)
    activations = sum(layer.units for layer in b.layers)
    return b.total, BYTES_PER_PARAM * b.total + BYTES_PER_ACTIVATION * spec.batch_size * activations


def memory_problem(spec: ExperimentSpec, memory_bytes: int | None = None) -> str | None:
    """Why ``spec`` cannot be trained in this machine's memory, or None."""
    memory_bytes = machine_memory_bytes() if memory_bytes is None else memory_bytes
    if not memory_bytes:
        return None
    n_params, need = training_bytes(spec)
    if need <= memory_bytes:
        return None
    gib = 2 ** 30
    return (f"the model has {n_params:,} parameters and needs about {need / gib:,.1f} GiB to train at batch size"
            f" {spec.batch_size:,} ({BYTES_PER_PARAM} bytes per parameter, {BYTES_PER_ACTIVATION} per activation"
            f" of a batch), more than this machine's {memory_bytes / gib:,.1f} GiB")


def _set_dotted(table: dict, dotted: str, value: Any) -> dict:
    out = dict(table)
    head, _, rest = dotted.partition(".")
    if rest:
        inner = out.get(head)
        out[head] = _set_dotted(inner if isinstance(inner, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return "x".join(_fmt_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _template_fields(template: str, available: list[str]) -> str | list[tuple[str, str | None]]:
    """A sweep name template as (literal, field) pairs, or why it is refused.

    Only plain ``{field}`` names: no attribute or index access (``{hidden.__class__}``,
    ``{hidden[0]}``), no conversion (``!r``) and no format spec (``{hidden:>999999999}``
    would allocate a gigabyte): the name is assembled here, never by str.format.
    """
    if len(template) > MAX_NAME_CHARS:
        return f"{len(template):,} characters long; names are at most {MAX_NAME_CHARS}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        return f"bad template {_short(template)}: {e}"
    out: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parts:
        if field is not None:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if conversion or spec:
                return (f"bad template {_short(template)}: {_short(shown, 30)}: no format specs or conversions;"
                        " write the plain field, e.g. {hidden}")
            if field not in available:
                trick = "" if field.isidentifier() or not field else " (only plain field names, no attribute or index)"
                return (f"bad template {_short(template)}: unknown field {_short(field, 30)}{trick}"
                        f"; available: {', '.join(available)}")
        out.append((literal, field))
    return out


def _variant_runs(vary: dict, base_repeats: Any) -> int:
    """Runs of a sweep's variants: each variant's ``repeats`` (varied or inherited), summed."""
    others = math.prod(len(values) for key, values in vary.items() if key != "repeats")
    if "repeats" not in vary:
        return others * (base_repeats if _is_int(base_repeats) else 1)
    return others * sum(r if _is_int(r) and r >= 1 else 1 for r in vary["repeats"])


def _expand_sweeps(sweeps: Any, resolved: dict[str, dict], own: dict, defaults: dict, errs: _Collector,
                   lines: _Lines, taken: set[str], limit: int, *, planned: int | None = None) -> list[ExperimentSpec]:
    """The experiments of every [[sweep]]; ``limit``: the most runs in all (experiments x repeats,
    sweeps included); ``planned``: the runs declared before the sweeps (default: one per experiment)."""
    if not isinstance(sweeps, list):
        errs.add(lines.table("sweep")[0], "", "'sweep' must be an array of tables: write [[sweep]]")
        return []
    out: list[ExperimentSpec] = []
    names = set(taken) | set(own)
    folded = {n.casefold(): n for n in names}
    planned = len(own) if planned is None else planned  # runs so far, counted before any sweep is expanded
    for i, sweep in enumerate(sweeps):
        line, keys = lines.table("sweep", i)
        line_of = _line_lookup(line, keys)
        context = f"sweep #{i + 1}" + (f" (from {_short(sweep['from'])})" if isinstance(sweep.get("from"), str) else "")
        before = len(errs.items)
        for key in sweep:
            if key not in SWEEP_KEYS:
                errs.add(line_of(key), context, f"unknown key {_short(key)}" + _suggest(key, SWEEP_KEYS))
        base_name = sweep.get("from")
        vary = sweep.get("vary")
        if not isinstance(base_name, str):
            errs.add(line, context, "missing required key 'from' (the experiment to vary)")
        elif base_name not in own:
            errs.add(line_of("from"), context, f"key 'from': no experiment named {_short(base_name)}" + _suggest(base_name, own))
        if not isinstance(vary, dict) or not vary:
            errs.add(line_of("vary") if "vary" in sweep else line, context,
                     "key 'vary': expected a table of key = [values], e.g. vary = { hidden = [5, 10] }")
        else:
            for key, values in vary.items():
                top = key.split(".")[0]
                if top not in EXPERIMENT_KEYS or top in ("name", "from", "part"):
                    errs.add(line_of("vary"), context, f"key 'vary.{key}': cannot vary {_short(key)}"
                             + _suggest(top, [k for k in EXPERIMENT_KEYS if k not in ("name", "from", "part")]))
                elif not isinstance(values, list) or not values:
                    errs.add(line_of("vary"), context, f"key 'vary.{key}': expected a non-empty array of values")
        template = sweep.get("name")
        if template is not None and not isinstance(template, str):
            errs.add(line_of("name"), context, "key 'name': expected a string template, e.g. \"cnn-{activation}-{hidden}\"")
        if "comment" in sweep and _str(sweep["comment"]):
            errs.add(line_of("comment"), context, f"key 'comment': {_str(sweep['comment'])}")
        pieces = None
        if isinstance(template, str) and isinstance(vary, dict):
            pieces = _template_fields(template, ["from", *(k.replace(".", "_") for k in vary)])
            if isinstance(pieces, str):
                errs.add(line_of("name"), context, f"key 'name': {pieces}")
        if len(errs.items) > before or base_name not in resolved:
            continue
        keys_ = list(vary)
        n_variants = math.prod(len(vary[k]) for k in keys_)
        n_runs = _variant_runs(vary, resolved[base_name].get("repeats", 1))
        if planned + n_runs > limit:  # counted before expanding: a 1 kB sweep may mean billions
            runs = f" ({n_runs:,} runs with their repeats)" if n_runs != n_variants else ""
            errs.add(line_of("vary"), context,
                     f"key 'vary': expands to {n_variants:,} experiment{'s' * (n_variants != 1)}{runs},"
                     f" {planned + n_runs:,} {'runs ' if runs else ''}in all; the limit is {limit:,}"
                     f"{' run' + 's' * (limit != 1) + ' (experiments x repeats; ' if runs else ' ('}"
                     f"set {MAX_EXPERIMENTS_VAR} to change it)")
            continue
        planned += n_runs
        base = {k: v for k, v in resolved[base_name].items() if k not in ("chosen", "comment")}
        for combo in itertools.product(*(vary[k] for k in keys_)):
            table = dict(base)
            for key, value in zip(keys_, combo):
                table = _set_dotted(table, key, value)
            fields = {k.replace(".", "_"): _fmt_value(v) for k, v in zip(keys_, combo)}
            if pieces:
                values = {**fields, "from": base_name}
                name = "".join(literal + (values[field] if field is not None else "") for literal, field in pieces)
            else:
                name = base_name + "".join(f"-{k.split('.')[-1]}{v}" for k, v in zip(keys_, (fields[k.replace('.', '_')] for k in keys_)))
            vcontext = f"{context}, variant {_short(name)}"
            n_errors = len(errs.items)
            for key, value in zip(keys_, combo):  # a bad value first, as an [[experiment]] reports it
                top = key.split(".")[0]
                if top in EXPERIMENT_KEYS and "." not in key:
                    problem = EXPERIMENT_KEYS[top](value)
                    if problem:
                        errs.add(line_of("vary"), vcontext, f"key 'vary.{key}': {problem}")
            # A variant with a bad value: its name problems (a template without that key makes a
            # duplicate) follow the value's line instead of coming first from the sweep's header.
            name_line = line_of("vary") if len(errs.items) > n_errors else line
            if _name(name):
                errs.add(name_line, vcontext, f"generated name: {_name(name)}")
                continue
            if name in names:
                errs.add(name_line, vcontext, f"expands to the duplicate name {name!r}")
                continue
            if name.casefold() in folded:
                errs.add(name_line, vcontext, f"expands to {name!r}, which differs from {folded[name.casefold()]!r}"
                         " only by case; their results would share a folder on macOS and Windows")
                continue
            names.add(name)
            folded[name.casefold()] = name
            table["name"] = name
            if "comment" in sweep:
                table["comment"] = sweep["comment"]
            spec = _build_spec(table, line, lambda _k: line_of("vary"), vcontext, errs)
            if spec:
                out.append(spec)
    return out


def _check_chosen(specs: list[ExperimentSpec], errs: _Collector) -> None:
    first: dict[str, ExperimentSpec] = {}
    for s in specs:
        if s.chosen:
            if s.part in first:
                errs.add(s.line, f"experiment {s.name!r}",
                         f"key 'chosen': part {s.part!r} already has a chosen model ({first[s.part].name!r});"
                         " choose one per part")
            else:
                first[s.part] = s
