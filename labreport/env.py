"""The ``LABREPORT_*`` environment variables: each one parsed and bounded by one helper that names it.

A wrong value (``LABREPORT_JOBS=two``, ``LABREPORT_QUICK=maybe``, ``LABREPORT_BUILD=``) is an
:class:`EnvError` (exit 2) naming the variable, the value and what is accepted; the CLI checks
the variables a command uses before running it, so a bad one cannot surface later as a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from labreport.errors import UserError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")
MAX_JOBS = 64  # parallel worker processes; more only thrashes a workstation
SCHEDULER_RE = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+$")


class EnvError(UserError):
    """A LABREPORT_* environment variable holds a value labreport cannot use (exit 2)."""


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # "flag", "int", "path", "scheduler"
    help: str
    lo: int = 0
    hi: int = 0


VARIABLES = {v.name: v for v in (
    Variable("LABREPORT_BUILD", "path", "the build folder (as -b)"),
    Variable("LABREPORT_DATA_DIR", "path", "where the data sets are cached (default BUILD/data)"),
    Variable("LABREPORT_QUICK", "flag", "--quick by default"),
    Variable("LABREPORT_OFFLINE", "flag", "skip the web source of the data sets"),
    Variable("LABREPORT_JOBS", "int", "--jobs by default (0 = one per core)", 0, MAX_JOBS),
    Variable("LABREPORT_SCHEDULER", "scheduler", "a Dask scheduler address, tcp://HOST:PORT"),
    Variable("LABREPORT_QUICK_EPOCHS", "int", "epochs of --quick runs", 1, 100_000),
    Variable("LABREPORT_QUICK_TRAIN", "int", "training images of --quick runs", 1, 60_000),
    Variable("LABREPORT_QUICK_TEST", "int", "test images of --quick runs", 1, 10_000),
    Variable("LABREPORT_FUSION", "flag", "train runs that can share one Keras model fused where it pays"
             " (default on; 0 = one by one)"),
    Variable("LABREPORT_MEMORY_GB", "int", "memory (GB) the runs trained at once may hold together"
             " (default: 90% of what is free when the run starts; 0 = no limit)", 0, 1_000_000),
    Variable("LABREPORT_MAX_EXPERIMENTS", "int", "runs a config may declare (experiments x repeats, sweeps included)"
             " (default 1,000)", 1, 1_000_000),
)}


def _bad(var: Variable, raw: str, expected: str) -> EnvError:
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    return EnvError(f"environment variable {var.name}={shown!r}: {expected}")


def parse(name: str, raw: str) -> object:
    """The value of variable ``name`` from its text ``raw``; EnvError if it is not acceptable."""
    var = VARIABLES[name]
    text = raw.strip()
    if var.kind == "flag":
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return _bad(var, raw, f"expected one of {', '.join(TRUE_WORDS)} or {', '.join(w for w in FALSE_WORDS if w)}")
    if var.kind == "int":
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            return _bad(var, raw, f"expected an integer from {var.lo} to {var.hi:,}")
        value = int(text)
        if not var.lo <= value <= var.hi:
            return _bad(var, raw, f"expected an integer from {var.lo} to {var.hi:,}, got {value:,}")
        return value
    if var.kind == "path":
        if not text or "\0" in raw:
            return _bad(var, raw, "expected a folder path (unset the variable for the default)")
        if len(os.fsencode(raw)) > 4096:
            return _bad(var, raw, "path longer than 4096 bytes")
        return raw
    if var.kind == "scheduler":
        if not text:
            return None
        if not SCHEDULER_RE.match(text):
            return _bad(var, raw, "expected a Dask scheduler address like tcp://HOST:8786")
        return text
    raise AssertionError(var.kind)  # pragma: no cover - a kind without a parser is a bug


def read(environ: Mapping[str, str] | None = None) -> tuple[dict[str, object], dict[str, EnvError]]:
    """(parsed values, problems) of every LABREPORT_* variable that is set.

    A variable that is set but empty means "unset" for flags and the scheduler; for paths it
    is refused (``LABREPORT_BUILD=`` would otherwise mean the current folder). The caller
    decides which problems matter: ``list`` need not fail on a bad ``LABREPORT_JOBS``.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    problems: dict[str, EnvError] = {}
    for name in VARIABLES:
        if name in env:
            value = parse(name, env[name])
            if isinstance(value, EnvError):
                problems[name] = value
            else:
                values[name] = value
    return values, problems


def get(name: str, default: object = None, environ: Mapping[str, str] | None = None) -> object:
    """One variable, parsed (``default`` when unset); raises its EnvError."""
    env = os.environ if environ is None else environ
    if name not in env:
        return default
    value = parse(name, env[name])
    if isinstance(value, EnvError):
        raise value
    return default if value is None else value

