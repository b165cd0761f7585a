"""One part of the lab (raw, hog, cnn, fashion): its table rows, best model and conclusions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401
from labreport.report import claims
from labreport.results import metrics
from labreport.report.comparisons import Comparison, comparison_summaries, comparisons
from labreport.report.describe import short_model
from labreport.report.observations import OVERFIT_RISE
from labreport.config.spec import PART_TITLES


@dataclass(frozen=True)
class PartRow:
    name: str
    model: str
    n_params: int
    batch_size: int
    epochs: int
    status: str
    test_loss: float | None
    test_accuracy: float | None
    macro_f1: float | None
    best_epoch: int | None
    epochs_run: int
    duration_s: float | None
    chosen: bool
    best: bool


@dataclass(frozen=True)
class PartSummary:
    part: str
    title: str
    rows: tuple[PartRow, ...]
    best: str | None
    best_sentence: str
    comparisons: tuple[Comparison, ...]
    conclusions: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def n_measured(self) -> int:
        return sum(1 for r in self.rows if r.test_accuracy is not None)


def part_summary(part: str, runs: Sequence[Run], min_variants: int = 3) -> PartSummary:
    """The part's rows, best model, comparisons and conclusions (formatted once, outside any claims place)."""
    with claims.paused():
        runs = [r for r in runs if r.spec.part == part]
        best = best_run(runs)
        rows = tuple(
            PartRow(
                name=r.name, model=short_model(r.spec), n_params=r.n_params, batch_size=r.spec.batch_size,
                epochs=r.spec.epochs, status=r.outcome, test_loss=r.headline("test_loss").mean,
                test_accuracy=r.headline("test_accuracy").mean, macro_f1=r.headline("macro_f1").mean,
                best_epoch=r.detail.facts["best_epoch"] if r.detail.result else None,
                epochs_run=r.detail.facts["epochs_run"] if r.detail.result else 0, duration_s=r.detail.duration_s,
                chosen=r.spec.chosen, best=best is not None and r.name == best.name,
            )
            for r in runs
        )
        comps = comparisons(runs)
        return PartSummary(part, PART_TITLES.get(part, part), rows, best.name if best else None, best_sentence(best),
                           tuple(comps), tuple(part_conclusions(runs, best, comps)),
                           tuple(part_warnings(runs, min_variants)))


def part_warnings(runs: Sequence[Run], min_variants: int) -> list[str]:
    """What is missing in a part (``runs``: the part's runs)."""
    warnings = []
    measured = [r for r in runs if r.ok]
    if len(measured) < min_variants:
        warnings.append(f"Only {fmt(len(measured))} of the at least {fmt(min_variants)} required variants of this"
                        " part have a successful result.")
    not_run = [r.name for r in runs if r.outcome == NOT_RUN]
    if not_run:
        warnings.append("Not run yet: " + ", ".join(not_run) + ".")
    bad = [f"{r.name} ({r.outcome})" for r in runs if r.outcome in ("failed", "diverged")]
    if bad:
        warnings.append("Failed or diverged: " + ", ".join(bad) + ".")
    return warnings


def best_sentence(best: Run | None) -> str:
    if not best:
        return "No successful result yet in this part."
    n = best.name
    mean = "mean " if best.repeated else ""
    with claims.about(n):
        return (f"Best model of this part: {n} — {mean}test accuracy"
                f" {pct(best.headline_accuracy, what=f'{mean}test accuracy of {n}', src=best.headline_source('test_accuracy'))},"
                f" test loss {num(best.headline('test_loss').mean, what=f'{mean}test loss of {n}', src=best.headline_source('test_loss'))},"
                f" macro F1 {num(best.headline('macro_f1').mean, what=f'{mean}macro F1 of {n}', src=best.headline_source('macro_f1'))},"
                f" {fmt(best.n_params, what=f'parameters of {n}', src=f'config:{n}/total')} parameters.")


def part_conclusions(runs: Sequence[Run], best: Run | None, comps: Sequence[Comparison]) -> list[str]:
    measured = [r for r in runs if r.ok]
    if not measured:
        return ["No conclusions yet: no experiment of this part has a successful result."]
    out = []
    ranked = sorted(measured, key=sort_key_best)
    if best:
        worst = ranked[-1]
        rb, rw = best.headline_source("test_accuracy"), worst.headline_source("test_accuracy")
        wb = "mean test accuracy" if best.repeated else "test accuracy"
        ww = "mean test accuracy" if worst.repeated else "test accuracy"
        spread = points(best.headline_accuracy - worst.headline_accuracy, sign=False,
                        what="spread of test accuracy in the part",
                        src=f"formula: {rb} − {rw}" if not (best.repeated or worst.repeated) else f"formula: ({rb}) − ({rw})")
        out.append(f"{best.name} has the best {wb} ({pct(best.headline_accuracy, what=f'{wb} of {best.name}', src=rb)});"
                   f" {worst.name} the lowest ({pct(worst.headline_accuracy, what=f'{ww} of {worst.name}', src=rw)}),"
                   f" a spread of {spread}"
                   f" points over {plural(len(measured), 'model')}.")
    chosen = [r for r in runs if r.spec.chosen]
    if chosen and best:
        c = chosen[0]
        if c.name == best.name:
            out.append(f"The chosen model ({c.name}) is also the most accurate one.")
        elif c.ok:
            out.append(f"The chosen model ({c.name}, {pct(c.headline_accuracy)}) is {points(best.headline_accuracy - c.headline_accuracy, sign=False)}"
                       f" points below the best; it has {fmt(c.n_params)} parameters vs {fmt(best.n_params)}.")
    out += comparison_summaries(comps)
    over = []
    for r in measured:
        f = r.detail.facts
        if f["best_epoch"] and f["best_epoch"] < f["epochs_run"] and f["min_test_loss"] and \
                f["test_loss_rise"] / f["min_test_loss"] > OVERFIT_RISE:
            over.append(f"{r.name} (best epoch {fmt(f['best_epoch'])} of {fmt(f['epochs_run'])},"
                        f" test loss {claims.signed_pct(f['test_loss_rise'] / f['min_test_loss'], 0)})")
    if over:
        out.append(f"Over-fitting (test loss up more than {100 * OVERFIT_RISE:.0f}% after its minimum) in"
                   f" {fmt(len(over))} of {fmt(len(measured))}: " + "; ".join(over) + ".")
    else:
        out.append(f"None of the {plural(len(measured), 'model')} over-fits by that measure (test loss up more than"
                   f" {100 * OVERFIT_RISE:.0f}% after its minimum).")
    pairs = part_confusions([r.detail for r in measured])
    if pairs:
        out.append("Summed over the part's models, the most frequent confusions are: "
                   + "; ".join(f"{p['true_name']} → {p['predicted_name']} ({fmt(p['count'])})" for p in pairs) + ".")
    return out


def part_confusions(runs: Sequence[Run], top: int = 3) -> list[dict]:
    mats = [m for m in (_counts(r) for r in runs) if m is not None]
    mats = [m for m in mats if m.shape == mats[0].shape]
    if not mats:
        return []
    return metrics.confused_pairs(sum(mats), runs[0].class_names, top=top)


def _counts(run: Run) -> np.ndarray | None:
    """``run``'s confusion matrix as a square array of numbers, one row per class, or None: a
    handed-in results.json is untrusted (verify reports a ragged or non-numeric matrix itself)."""
    value = run.result.get("confusion") if run.result else None
    try:
        m = np.asarray(value, dtype=float) if value else None
    except (TypeError, ValueError):
        return None
    n = len(run.class_names)
    return m if m is not None and m.shape == (n, n) and np.isfinite(m).all() else None
