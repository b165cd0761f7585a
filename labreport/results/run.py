"""The Run view: one declared experiment and its stored result(s), read safely.

Used by the report (prose, tables), verify and grade: the one place that turns a stored
result dict (docs/results.md, untrusted when it comes from a PDF attachment) into typed
numbers. Non-finite or non-numeric values read as None (``finite``), so no caller scrubs
NaN again.

Repeats (``repeats = N``): a ``Run`` is repeat 1 of its experiment and carries the other
runs in ``more_runs`` (repeat 2..N, in order). :class:`Aggregate` is the view over all of
them: mean and sample standard deviation (n - 1) of the test metrics over the *measured*
runs (status ok with a test accuracy), per-epoch mean and std curves, and the median run.
``Run.headline(key)`` is the number the report prints for an experiment: repeat 1's value
with one run (exactly as before repeats), the mean over the measured runs otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from labreport.config.param_counts import Breakdown, breakdown
from labreport.config.spec import CLASS_NAMES, ExperimentSpec
from labreport.results import metrics

NOT_RUN = "not run"
# What a full (not --quick) run of each data set trains and tests on.
FULL_SIZES = {"mnist": (60_000, 10_000), "fashion": (60_000, 10_000)}


def finite(v: Any) -> float | None:
    """``v`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


@dataclass(frozen=True)
class Stat:
    """A metric over an experiment's measured runs: mean, sample std (n - 1; None below 2 runs), n."""

    mean: float | None
    std: float | None
    n: int


HEADLINE_KEYS = ("test_accuracy", "test_loss", "macro_f1")


@dataclass(frozen=True)
class Run:
    """One declared experiment and its stored result (None = not run yet).

    ``spec.repeat`` says which run this is; repeat 1 carries the experiment's other runs
    (repeat 2..N) in ``more_runs``.
    """

    spec: ExperimentSpec
    result: dict | None = None
    more_runs: tuple[Run, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def repeat(self) -> int:
        return self.spec.repeat

    @property
    def source(self) -> str:
        """Where this run's result is in results.json, as a claim source prefix."""
        if self.spec.repeat == 1:
            return f"results:{self.name}"
        return f"results:{self.name}/more_runs/{self.spec.repeat - 2}"

    @property
    def repeated(self) -> bool:
        """The experiment declares more than one run (the report prints means)."""
        return self.spec.repeats > 1

    @property
    def detail(self) -> Run:
        """The run whose status, curves, confusion matrix and detail numbers stand for the
        experiment: this one; with repeats the median run, or while none is measured the first
        run stored (failed or diverged), else this one."""
        if not self.repeated:
            return self
        agg = self.aggregate
        return agg.median or next((r for r in agg.runs if r.result is not None), self)

    @property
    def outcome(self) -> str:
        """The experiment's status as the report prints it: ``status`` without repeats; with
        repeats 'ok' while any run is measured -- its numbers are the mean over those runs, so a
        failed or missing run 1 next to measured runs 2-3 is "2 of 3 runs", exactly as a failed
        run 3 is -- else the status of the first run stored, else 'not run'."""
        return self.detail.status

    @property
    def ok(self) -> bool:
        """The experiment has numbers to print, rank and compare (outcome ok, a test accuracy)."""
        return self.outcome == "ok" and self.detail.measured

    @property
    def aggregate(self) -> Aggregate:
        return Aggregate((self, *self.more_runs))

    def headline(self, key: str) -> Stat:
        """The number the report prints for ``key`` (one of HEADLINE_KEYS): repeat 1's value with
        one declared run, the mean (and std) over the measured runs with several."""
        if not self.repeated:
            v = self._metric(key)
            return Stat(v, None, int(v is not None))
        return self.aggregate.stat(key)

    @property
    def headline_accuracy(self) -> float | None:
        """The test accuracy the report ranks and prints (the mean with repeats)."""
        return self.headline("test_accuracy").mean

    def headline_source(self, key: str) -> str:
        if not self.repeated:
            return f"results:{self.name}/metrics/{key}"
        return Aggregate.mean_source(self.name, key)

    @property
    def status(self) -> str:
        return self.result.get("status", "failed") if self.result else NOT_RUN

    @property
    def measured(self) -> bool:
        """Has final test metrics (ok, or diverged with numbers)."""
        return self.test_accuracy is not None and self.status in ("ok", "diverged")

    @property
    def metrics(self) -> dict:
        m = (self.result or {}).get("metrics")
        return m if isinstance(m, dict) else {}

    def _metric(self, key: str) -> float | None:
        return finite(self.metrics.get(key))

    @property
    def test_accuracy(self) -> float | None:
        return self._metric("test_accuracy")

    @property
    def test_loss(self) -> float | None:
        return self._metric("test_loss")

    @property
    def macro_f1(self) -> float | None:
        return self._metric("macro_f1")

    @property
    def data(self) -> dict:
        d = (self.result or {}).get("data")
        return d if isinstance(d, dict) else {}

    @property
    def n_test(self) -> int:
        return int(self.data.get("n_test") or 10_000)

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch curves as floats; NaN where the stored value is null (diverged epochs)."""
        h = (self.result or {}).get("history") or {}
        return {k: [float(x) if isinstance(x, (int, float)) else math.nan for x in v]
                for k, v in h.items() if isinstance(v, list)}

    @property
    def facts(self) -> dict:
        """learning_curve_facts recomputed from the history (old results may lack them).

        After a divergence only the finite prefix of the curves counts; ``epochs_run``
        still counts every recorded epoch and ``diverged_epoch`` says where it broke.
        """
        return {**metrics.learning_curve_facts(self.history), "diverged_epoch": metrics.diverged_epoch(self.history)}

    @property
    def class_names(self) -> list[str]:
        names = (self.result or {}).get("class_names")
        default = CLASS_NAMES[self.spec.dataset]
        # A handed-in result is untrusted: only a list of one name per class is read.
        ok = isinstance(names, list) and len(names) == len(default) and all(isinstance(n, str) for n in names)
        return list(names) if ok else default

    @property
    def breakdown(self) -> Breakdown:
        return breakdown(self.spec)

    @property
    def n_params(self) -> int:
        return self.breakdown.total

    @property
    def duration_s(self) -> float | None:
        return finite((self.result or {}).get("duration_s"))

    def full_run_contradictions(self) -> list[str]:
        """Why this result, stored as a full run with status ok, cannot be one (empty: no reason found).

        What this proves is limited: the stored fields contradict a full run on their face.
        A result without these marks may still be forged; only re-training proves training.
        """
        if not self.result or self.status != "ok":
            return []
        out = []
        if self.result.get("quick"):
            out.append("its result says quick = true (a --quick smoke run)")
        n = self.facts["epochs_run"]
        if "history" in self.result and n < self.spec.epochs:
            out.append(f"status ok after {n} of the {self.spec.epochs} declared epochs")
        sizes = FULL_SIZES.get(self.spec.dataset)
        d = self.data
        if sizes:
            for key, want in zip(("n_train", "n_test"), sizes):
                got = d.get(key)
                if got is not None and got != want:
                    out.append(f"{key} = {got!r}, the full {self.spec.dataset} data set has {want:,}")
        return out


@dataclass(frozen=True)
class Aggregate:
    """An experiment's runs (repeat 1..N as declared; a result None = not run yet) taken together."""

    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        return self.runs[0].name

    @property
    def n_declared(self) -> int:
        return self.runs[0].spec.repeats

    @property
    def measured(self) -> tuple[Run, ...]:
        """The runs the statistics are over: status ok with a finite test accuracy."""
        return tuple(r for r in self.runs if r.status == "ok" and r.measured)

    @property
    def n_measured(self) -> int:
        return len(self.measured)

    def stat(self, key: str) -> Stat:
        values = [v for v in (r._metric(key) for r in self.measured) if v is not None]
        if not values:
            return Stat(None, None, 0)
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if len(values) >= 2 else None
        return Stat(mean, std, len(values))

    @staticmethod
    def mean_source(name: str, key: str) -> str:
        return (f"formula: mean of results:{name}/metrics/{key} and results:{name}/more_runs/*/metrics/{key}"
                " over the measured runs (status ok)")

    @staticmethod
    def std_source(name: str, key: str) -> str:
        return (f"formula: sample standard deviation (n − 1) of results:{name}/metrics/{key} and"
                f" results:{name}/more_runs/*/metrics/{key} over the measured runs (status ok)")

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Per-epoch mean and sample std of each history curve over the measured runs (the epochs
        every one of them recorded); std is NaN with a single run."""
        out: dict[str, tuple[list[float], list[float]]] = {}
        histories = [r.history for r in self.measured]
        if not histories:
            return out
        for key in histories[0]:
            series = [h.get(key, []) for h in histories]
            n = min(len(x) for x in series)
            if n == 0:
                continue
            a = np.array([x[:n] for x in series], dtype=float)
            mean = a.mean(axis=0)
            std = a.std(axis=0, ddof=1) if len(a) >= 2 else np.full(n, np.nan)
            out[key] = (mean.tolist(), std.tolist())
        return out

    @property
    def median(self) -> Run | None:
        """The median run by test accuracy (the lower middle one for an even count; ties: the lower repeat)."""
        runs = self.measured
        if not runs:
            return None
        accs = sorted(r.test_accuracy for r in runs)
        mid = accs[(len(accs) - 1) // 2]
        return min((r for r in runs if r.test_accuracy == mid), key=lambda r: r.repeat)


def sort_key_best(run: Run) -> tuple:
    """Best first: highest test accuracy, then lowest test loss, then name (stable); means with repeats."""
    acc, loss = run.headline("test_accuracy").mean, run.headline("test_loss").mean
    return (-(acc or 0.0), loss if loss is not None else math.inf, run.name)


def best_run(runs: Iterable[Run]) -> Run | None:
    ok = [r for r in runs if r.ok]
    return min(ok, key=sort_key_best) if ok else None
