"""Is a stored result up to date with its spec? One decision, with the reasons (as ``dvc status``).

A result is *fresh* when its ``cache_key`` equals the key the spec has now (a sha256 of
everything that affects the numbers: the spec's result-relevant fields, the data's
identity, the engine version and, for --quick runs, the smoke-run caps) and its status
is final (``ok`` or ``diverged``). Anything else is to be (re)run, and the reasons say
why: new, spec changed (which keys), data changed, engine version changed, failed last
time, only a quick result, unreadable. ``run``, ``run --dry-run``, ``status``, ``render``,
``check`` and ``grade`` all ask :func:`decide`.

With ``repeats = N`` every run of an experiment is decided on its own (:func:`check_runs`):
each has its own seed, so its own cache key and its own stored result.

Pure and cheap: the data's identity comes from the checksum table, not the data, and
nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labreport.config.spec import ExperimentSpec, run_label
from labreport.results import store
from labreport.results.layout import BuildLayout

if TYPE_CHECKING:
    from labreport.config.spec import LabConfig
    from labreport.train.engine import QuickConfig

# plan's vocabulary, kept by check, grade and the report.
FRESH, MISSING, STALE, FAILED = "fresh", "missing", "stale", "failed"
# Reasons that mean "a result exists but was computed from other inputs" (the report's OUT OF DATE).
CHANGED_INPUTS = ("spec", "data", "engine", "key")


@dataclass(frozen=True)
class Reason:
    kind: str  # new | quick-only | unreadable | failed | spec | data | engine | key
    text: str


@dataclass(frozen=True)
class Staleness:
    """The decision for one experiment: ``status`` in plan's vocabulary, and why."""

    name: str
    status: str  # fresh | missing | stale | failed
    reasons: tuple[Reason, ...] = ()
    repeat: int = 1  # which run of the experiment (1-based) ...
    repeats: int = 1  # ... of how many it declares

    @property
    def label(self) -> str:
        """'raw-tanh-300 run 2/3', or the name alone for an experiment without repeats."""
        return run_label(self.name, self.repeat, self.repeats)

    @property
    def fresh(self) -> bool:
        return self.status == FRESH

    @property
    def out_of_date(self) -> bool:
        """A result is stored, but for other settings, data or engine than today's."""
        return any(r.kind in CHANGED_INPUTS for r in self.reasons)

    def why(self) -> str:
        return "; ".join(r.text for r in self.reasons) or "up to date"


# --------------------------------------------------------------------------- identity
def data_sha256(dataset: str) -> str:
    """The data set's identity for cache keys, from the verified checksum table (no I/O)."""
    from labreport.train import datasets  # numpy only; the table lives with the loaders

    return datasets.combined_sha256(datasets.CHECKSUMS[dataset])


def engine_version(spec: ExperimentSpec) -> str:
    from labreport.train.engine import engine_version  # pure; engine imports TF only in functions

    return engine_version(spec)


def quick_tag(quick_cfg: QuickConfig | None) -> str:
    from labreport.train.engine import QuickConfig

    return (quick_cfg or QuickConfig.from_env()).tag


def cache_key(spec: ExperimentSpec, *, quick: bool = False, quick_cfg: QuickConfig | None = None) -> str:
    """The key a fresh result of ``spec`` must carry (quick caps included for quick runs)."""
    version = engine_version(spec) + ("+" + quick_tag(quick_cfg) if quick else "")
    return spec.cache_key(data_sha256=data_sha256(spec.dataset), engine_version=version, quick=quick)


# --------------------------------------------------------------------------- the decision
def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples -> lists), as the stored spec holds it."""
    return json.loads(json.dumps(value))


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _changed_inputs(spec: ExperimentSpec, result: dict, *, quick: bool) -> list[Reason]:
    """Why a stored key differs from today's: which spec keys, the data, the engine."""
    out = []
    stored_spec = result.get("spec") if isinstance(result.get("spec"), dict) else {}
    now = _plain(spec.result_dict())
    keys = [k for k, v in now.items() if stored_spec.get(k) != v]
    if keys:
        out.append(Reason("spec", "spec changed: " + ", ".join(
            f"{k} {_short(stored_spec.get(k))} -> {_short(now[k])}" for k in keys)))
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    stored_data, expected_data = data.get("sha256"), data_sha256(spec.dataset)
    if stored_data and stored_data != expected_data:
        out.append(Reason("data", f"data changed: {spec.dataset} sha256 {str(stored_data)[:12]}..."
                                  f" -> {expected_data[:12]}..."))
    versions = result.get("versions") if isinstance(result.get("versions"), dict) else {}
    stored_engine, expected_engine = versions.get("engine"), engine_version(spec)
    if stored_engine is not None and str(stored_engine) != expected_engine:
        out.append(Reason("engine", f"engine version changed: {stored_engine} -> {expected_engine}"))
    if not out and not quick and result.get("quick") is True:
        out.append(Reason("key", "a --quick smoke-run result stored among the full runs"))
    if not out:
        what = "other --quick caps (LABREPORT_QUICK_*) or " if quick else ""
        out.append(Reason("key", f"stored under another cache key ({what}a result made elsewhere)"))
    return out


def decide(spec: ExperimentSpec, result: dict | None, *, quick: bool = False,
           quick_cfg: QuickConfig | None = None, unreadable: bool = False,
           quick_result_exists: bool = False) -> Staleness:
    """Fresh or not, and why, for ``spec`` and its stored ``result`` (None: none usable).

    ``unreadable``: a result.json exists but could not be used (half-written, corrupt,
    another schema). ``quick_result_exists``: for a full run, a --quick result is stored.
    """
    def made(status: str, reasons: Sequence[Reason] = ()) -> Staleness:
        return Staleness(spec.name, status, tuple(reasons), repeat=spec.repeat, repeats=spec.repeats)

    if result is None:
        if unreadable:
            return made(STALE, (Reason(
                "unreadable", "stored result unreadable (half-written, corrupt or another schema)"),))
        reasons = [Reason("new", "new: never run" + (" with --quick" if quick else ""))]
        if quick_result_exists and not quick:
            reasons.append(Reason("quick-only", "only a --quick smoke-run result exists"))
        return made(MISSING, reasons)
    key_ok = result.get("cache_key") == cache_key(spec, quick=quick, quick_cfg=quick_cfg)
    if key_ok and result.get("status") in store.FINAL_STATUSES:
        return made(FRESH)
    reasons = [] if key_ok else _changed_inputs(spec, result, quick=quick)
    if result.get("status") == "failed":
        error = str(result.get("error") or "no detail").splitlines()[0]
        return made(FAILED, (Reason("failed", f"failed last time: {error}"), *reasons))
    return made(STALE, reasons)


def check(spec: ExperimentSpec, layout: BuildLayout, *, quick_cfg: QuickConfig | None = None) -> Staleness:
    """:func:`decide` on what is stored under ``layout`` (its ``quick`` picks the results) for
    ``spec``, one run of an experiment (``spec.repeat``; repeat 1 for the experiment itself)."""
    name, repeat = spec.name, spec.repeat
    result = store.read_result(layout.root, name, layout.quick, repeat=repeat)
    return decide(
        spec, result, quick=layout.quick, quick_cfg=quick_cfg,
        unreadable=result is None and layout.result_path(name, repeat).exists(),
        quick_result_exists=not layout.quick and layout.with_quick(True).result_path(name, repeat).exists(),
    )


def check_runs(spec: ExperimentSpec, layout: BuildLayout, *,
               quick_cfg: QuickConfig | None = None) -> list[Staleness]:
    """:func:`check` for each of the experiment's ``repeats`` runs, repeat 1 first."""
    return [check(run, layout, quick_cfg=quick_cfg) for run in spec.runs()]


def check_all(config: LabConfig, layout: BuildLayout, *, specs: Sequence[ExperimentSpec] | None = None,
              quick_cfg: QuickConfig | None = None) -> list[Staleness]:
    """:func:`check` for ``specs`` (default: every experiment of ``config``), in that order
    (each experiment's repeat 1; :func:`check_all_runs` decides every run)."""
    return [check(s, layout, quick_cfg=quick_cfg) for s in (config.experiments if specs is None else specs)]


def check_all_runs(config: LabConfig, layout: BuildLayout, *, specs: Sequence[ExperimentSpec] | None = None,
                   quick_cfg: QuickConfig | None = None) -> list[list[Staleness]]:
    """:func:`check_runs` for ``specs`` (default: every experiment of ``config``): one list of
    decisions per experiment, its runs in order."""
    return [check_runs(s, layout, quick_cfg=quick_cfg) for s in (config.experiments if specs is None else specs)]
