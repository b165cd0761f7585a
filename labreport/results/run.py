"""The Run view: one declared experiment and its stored result, read safely.

Used by the report (prose, tables), verify and grade: the one place that turns a stored
result dict (docs/results.md, untrusted when it comes from a PDF attachment) into typed
numbers. Non-finite or non-numeric values read as None (``finite``), so no caller scrubs
NaN again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

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
class Run:
    """One declared experiment and its stored result (None = not run yet)."""

    spec: ExperimentSpec
    result: dict | None = None

    @property
    def name(self) -> str:
        return self.spec.name

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
        return list(names) if names else CLASS_NAMES[self.spec.dataset]

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


def sort_key_best(run: Run) -> tuple:
    """Best first: highest test accuracy, then lowest test loss, then name (stable)."""
    loss = run.test_loss if run.test_loss is not None else math.inf
    return (-(run.test_accuracy or 0.0), loss, run.name)


def best_run(runs: Iterable[Run]) -> Run | None:
    ok = [r for r in runs if r.status == "ok" and r.measured]
    return min(ok, key=sort_key_best) if ok else None
