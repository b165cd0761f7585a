"""What the report observes about one experiment: its curves (over-fitting, where they meet) and its confusions.

Over-fitting: the test loss rose by more than ``OVERFIT_RISE`` (5 %) of its minimum
between its best epoch and the last epoch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, signed_pct, seconds  # noqa: F401
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401

OVERFIT_RISE = 0.05


def curve_observations(run: Run) -> list[str]:
    """Over-fitting and where the curves meet, from the per-epoch history."""
    h = run.history
    loss, val = h.get("loss", []), h.get("val_loss", [])
    n = min(len(loss), len(val))
    if n == 0:
        return ["No per-epoch history was recorded."]
    f = run.facts
    out = []
    if n < run.spec.epochs:
        out.append(f"Training stopped after {plural(n, 'epoch')} of the {fmt(run.spec.epochs)} planned.")
    if f["diverged_epoch"]:
        k = f["diverged_epoch"] - 1
        text = f"The loss became NaN or infinite at epoch {fmt(f['diverged_epoch'])}: the training diverged"
        if k:
            text += (f"; until then the test loss was lowest at epoch {fmt(f['best_epoch'])}"
                     f" ({num(f['min_test_loss'])})")
        out.append(text + ".")
        return out
    best, mn, final = f["best_epoch"], f["min_test_loss"], val[n - 1]
    if best == n:
        out.append(f"The test loss was lowest at the last epoch ({fmt(best)}: {num(mn)}): no sign of"
                   f" over-fitting within {plural(n, 'epoch')}; more epochs might still help.")
    else:
        rise = final - mn
        rel = rise / mn if mn > 0 else 0.0
        text = (f"The test loss reached its minimum {num(mn)} at epoch {fmt(best)} of {fmt(n)}, then rose by"
                f" {num(rise)} ({signed_pct(rel)}) to {num(final)} at the last epoch")
        if rel > OVERFIT_RISE:
            text += (f": over-fitting — the last {plural(n - best, 'epoch')} made the test loss worse"
                     f" while the training loss kept falling" if loss[n - 1] < loss[best - 1] else
                     f": the test loss got worse over the last {plural(n - best, 'epoch')}")
            text += "."
        else:
            text += f": a rise under {100 * OVERFIT_RISE:.0f}% — the curve is flat after its minimum rather than over-fitting."
        out.append(text)
    gap = final - loss[n - 1]
    gap_text = (f"At the last epoch the test loss is {num(final)} and the training loss {num(loss[n - 1])}"
                f" (gap test − train {signed(gap)})")
    if gap < 0 and run.spec.dropout:
        gap_text += (f": the test loss is lower because the training loss is measured with dropout"
                     f" ({run.spec.dropout:g}) switched on.")
    elif gap < 0:
        gap_text += ": the model does not fit the training set better than the test set."
    else:
        gap_text += "."
    out.append(gap_text)
    out.append(_meeting_sentence(loss[:n], val[:n], f["cross_epoch"]))
    acc, vacc = h.get("accuracy", []), h.get("val_accuracy", [])
    m = min(len(acc), len(vacc))
    if m:
        out.append(f"Final accuracy: training {pct(acc[m - 1])}, test {pct(vacc[m - 1])}"
                   f" ({points(acc[m - 1] - vacc[m - 1])} points train − test).")
    return out


def _meeting_sentence(loss: Sequence[float], val: Sequence[float], cross_epoch: int | None) -> str:
    n = len(loss)
    sign = [v > t for v, t in zip(val, loss)]
    changes = [i + 1 for i in range(1, n) if sign[i] != sign[i - 1]]  # 1-based epochs where the order flips
    if not changes:
        if sign[0]:
            return f"The test loss stays above the training loss for all {plural(n, 'epoch')}: the curves never meet."
        return (f"The test loss stays below the training loss for all {plural(n, 'epoch')}:"
                " the curves never meet.")
    first = changes[0]
    if cross_epoch is not None:
        text = f"The curves meet at epoch {fmt(cross_epoch)}: from then on the test loss stays above the training loss"
        if len(changes) > 1:
            text += f" (they crossed {_times(len(changes))} in all, first at epoch {fmt(first)})"
        return text + "."
    return (f"The curves cross {_times(len(changes))} (first at epoch {fmt(first)}, last at epoch"
            f" {fmt(changes[-1])}) and end with the test loss below the training loss.")


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{fmt(n)} times")


def confusion_observations(run: Run, top: int = 3) -> list[str]:
    pairs = (run.result or {}).get("confused_pairs") or []
    per_class = (run.result or {}).get("per_class") or []
    out = []
    if pairs:
        parts = []
        for p in pairs[:top]:
            parts.append(f"{p['true_name']} predicted as {p['predicted_name']}: {plural(int(p['count']), 'time')}"
                         f" ({pct(p.get('share_of_true', 0.0), 1)} of class {p['true_name']})")
        out.append("Most confused: " + "; ".join(parts) + ".")
        cm = (run.result or {}).get("confusion")
        if cm:
            both = _mutual_pairs(np.asarray(cm), run.class_names, pairs[:top])
            if both:
                out.append("Confused in both directions: " + "; ".join(both) + ".")
    if per_class:
        ranked = sorted(per_class, key=lambda c: (c["f1"], c["label"]))
        lo, hi = ranked[0], ranked[-1]
        out.append(f"Lowest F1: {lo['name']} ({num(lo['f1'], 3)}); highest: {hi['name']} ({num(hi['f1'], 3)}).")
    return out


def _mutual_pairs(cm: np.ndarray, names: list[str], pairs: list[dict]) -> list[str]:
    seen, out = set(), []
    for p in pairs:
        t, q = int(p["true"]), int(p["predicted"])
        key = frozenset((t, q))
        if key in seen or cm.shape[0] <= max(t, q):
            continue
        seen.add(key)
        back = int(cm[q, t])
        if back > 0:
            out.append(f"{names[t]} ↔ {names[q]} ({fmt(int(cm[t, q]))} + {fmt(back)} = {fmt(int(cm[t, q]) + back)} times)")
    return out


def observations(run: Run) -> list[str]:
    """Everything the report says about one experiment, in reading order."""
    if run.status == NOT_RUN:
        return ["This experiment has not been run yet: run `labreport run` (or `make report`)."]
    out = []
    error = (run.result or {}).get("error")
    if run.status == "failed":
        out.append(f"The run FAILED: {error or 'no error message'}. It is retried by the next run.")
    elif run.status == "diverged":
        out.append(f"The training DIVERGED: {error or 'the loss became NaN or infinite'}.")
    out += curve_observations(run)
    if run.measured:
        out += confusion_observations(run)
    return out
