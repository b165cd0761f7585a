"""The report's words: observations, comparisons and answers stated from the measured numbers.

Pure functions (no I/O, no plotting, no TensorFlow): they take specs and the stored
result dicts (docs/results.md) and return small frozen dataclasses of ready-to-print
strings and numbers. Nothing here is typed by hand: every number in a sentence is read
from a result or computed from a spec (``params.breakdown``), so the prose cannot
contradict the tables and plots next to it.

Thresholds used in the wording (documented here because they shape the conclusions):

- over-fitting: the test loss rose by more than ``OVERFIT_RISE`` (5 %) of its minimum
  between its best epoch and the last epoch;
- a difference in test accuracy between two models is called "not significant" when it
  is smaller than two standard errors of the difference of two proportions measured on
  their test sets (sqrt(p(1-p)/n) each; about 0.2 points at 98 % on 10,000 images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Iterable, Sequence

import numpy as np

from labreport.results import metrics
from labreport.config.param_counts import Breakdown, breakdown, fmt
from labreport.config.spec import CLASS_NAMES, IMAGE_SIDE, OPTIMIZERS, PART_TITLES, PARTS, ExperimentSpec

OVERFIT_RISE = 0.05
NOT_RUN = "not run"
DATASET_TITLES = {"mnist": "MNIST (handwritten digits)", "fashion": "Fashion-MNIST (clothes)"}
OPTIMIZER_TITLES = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
ARG_MEANINGS = {
    "learning_rate": "step size η",
    "rho": "decay rate ρ of the moving average of g²",
    "momentum": "momentum μ of the update (0 = none)",
    "epsilon": "small ε that keeps the division stable",
    "centered": "if true, divide by the variance E[g²] − E[g]² instead of E[g²]",
    "beta_1": "decay rate of the first moment",
    "beta_2": "decay rate of the second moment",
    "amsgrad": "AMSGrad variant",
    "nesterov": "Nesterov momentum",
}
KEY_LABELS = {
    "dataset": "data set",
    "hidden": "hidden layer size",
    "activation": "activation",
    "dropout": "dropout",
    "batch_size": "batch size",
    "epochs": "epochs",
    "seed": "seed",
    "conv": "convolution stack",
    "hog.pixels_per_cell": "HOG pixels per cell",
    "hog.orientations": "HOG orientations",
}


# --------------------------------------------------------------------------- formatting
def pct(x: float | None, digits: int = 2) -> str:
    """0.98123 -> '98.12%'."""
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def num(x: float | None, digits: int = 4) -> str:
    """A loss or score: 4 decimals."""
    return "—" if x is None else f"{x:.{digits}f}"


def signed(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def points(x: float, digits: int = 2) -> str:
    """A difference of accuracies in percentage points: 0.0052 -> '+0.52'."""
    return f"{100 * x:+.{digits}f}".replace("-", "−")


def value_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):
        return fmt(v)
    if isinstance(v, (list, tuple)):
        return "-".join(value_str(x) for x in v)
    return str(v)


def seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{fmt(n)} {word if n == 1 else (many or word + 's')}"


# --------------------------------------------------------------------------- one run
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
        return (self.result or {}).get("metrics") or {}

    def _metric(self, key: str) -> float | None:
        v = self.metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
        return None

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
    def n_test(self) -> int:
        return int(((self.result or {}).get("data") or {}).get("n_test") or 10_000)

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
        v = (self.result or {}).get("duration_s")
        return float(v) if isinstance(v, (int, float)) else None


def sort_key_best(run: Run) -> tuple:
    """Best first: highest test accuracy, then lowest test loss, then name (stable)."""
    loss = run.test_loss if run.test_loss is not None else math.inf
    return (-(run.test_accuracy or 0.0), loss, run.name)


def best_run(runs: Iterable[Run]) -> Run | None:
    ok = [r for r in runs if r.status == "ok" and r.measured]
    return min(ok, key=sort_key_best) if ok else None


# --------------------------------------------------------------------------- model words
def dataset_title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def inputs_text(spec: ExperimentSpec) -> str:
    n = breakdown(spec).n_inputs
    if spec.conv:
        return (f"the {IMAGE_SIDE} x {IMAGE_SIDE} x 1 grey-level image ({fmt(n)} pixel values,"
                " scaled to [0, 1]), kept as an image so the convolutions see its 2-D structure")
    if spec.hog:
        cells = IMAGE_SIDE // spec.hog.pixels_per_cell
        return (f"{fmt(n)} HOG features: ({IMAGE_SIDE} // {spec.hog.pixels_per_cell})^2 = {cells * cells}"
                f" cells of {spec.hog.pixels_per_cell} x {spec.hog.pixels_per_cell} pixels"
                f" x {spec.hog.orientations} orientation bins (cells_per_block = 1 x 1)")
    return f"the {IMAGE_SIDE} x {IMAGE_SIDE} = {fmt(n)} pixels of the image, scaled to [0, 1], as a flat vector"


def outputs_text(spec: ExperimentSpec) -> str:
    names = CLASS_NAMES[spec.dataset]
    what = "digits " + names[0] + " to " + names[-1] if spec.dataset == "mnist" else ", ".join(names)
    return f"{len(names)} softmax probabilities, one per class ({what}); the prediction is the largest"


def model_description(spec: ExperimentSpec) -> str:
    """The layers in order, e.g. 'Raw pixels 28 x 28 = 784 → Dense(250, tanh) → ...'."""
    return " → ".join(layer.description for layer in breakdown(spec).layers)


def short_model(spec: ExperimentSpec) -> str:
    """A table cell: '784-250-10, tanh, dropout 0.5' (``ExperimentSpec.summary``)."""
    return spec.summary


def optimizer_text(spec: ExperimentSpec, *, short: bool = False) -> str:
    """'RMSprop(learning_rate=0.001, ...)'; ``short``: only the arguments that differ from Keras' defaults."""
    args = spec.optimizer.as_dict()
    title = OPTIMIZER_TITLES.get(spec.optimizer.name, spec.optimizer.name)
    if short:
        defaults = OPTIMIZERS.get(spec.optimizer.name, {})
        changed = {k: v for k, v in args.items() if k not in defaults or defaults[k] != v}
        if not changed:
            return f"{title}, Keras defaults"
        args = changed
    return f"{title}(" + ", ".join(f"{k}={value_str(v)}" for k, v in args.items()) + ")"


def hyperparameters(spec: ExperimentSpec) -> list[tuple[str, str]]:
    rows = [
        ("Data set", dataset_title(spec.dataset)),
        ("Inputs", fmt(breakdown(spec).n_inputs) + (" HOG features" if spec.hog else " pixels")),
    ]
    if spec.hog:
        rows.append(("HOG", f"{spec.hog.pixels_per_cell} x {spec.hog.pixels_per_cell} px cells,"
                            f" {spec.hog.orientations} orientations"))
    if spec.conv:
        rows.append(("Convolutions", ", ".join(
            f"{c.filters}@{c.kernel}x{c.kernel} {c.activation}" + (f" + pool {c.pool}" if c.pool > 1 else "")
            for c in spec.conv)))
    rows += [
        ("Hidden layer" + ("s" if len(spec.hidden) > 1 else ""), ", ".join(fmt(h) for h in spec.hidden)),
        ("Activation", spec.activation),
        ("Dropout", f"{spec.dropout:g}" if spec.dropout else "none"),
        ("Batch size", fmt(spec.batch_size)),
        ("Epochs", fmt(spec.epochs)),
        ("Optimizer", optimizer_text(spec, short=True)),
        ("Seed", str(spec.seed)),
        ("Parameters", fmt(breakdown(spec).total)),
    ]
    return rows


# --------------------------------------------------------------------------- observations
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
        text = f"The loss became NaN or infinite at epoch {f['diverged_epoch']}: the training diverged"
        if k:
            text += (f"; until then the test loss was lowest at epoch {f['best_epoch']}"
                     f" ({num(f['min_test_loss'])})")
        out.append(text + ".")
        return out
    best, mn, final = f["best_epoch"], f["min_test_loss"], val[n - 1]
    if best == n:
        out.append(f"The test loss was lowest at the last epoch ({best}: {num(mn)}): no sign of"
                   f" over-fitting within {plural(n, 'epoch')}; more epochs might still help.")
    else:
        rise = final - mn
        rel = rise / mn if mn > 0 else 0.0
        text = (f"The test loss reached its minimum {num(mn)} at epoch {best} of {n}, then rose by"
                f" {num(rise)} ({100 * rel:+.1f}%) to {num(final)} at the last epoch")
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
        text = f"The curves meet at epoch {cross_epoch}: from then on the test loss stays above the training loss"
        if len(changes) > 1:
            text += f" (they crossed {_times(len(changes))} in all, first at epoch {first})"
        return text + "."
    return (f"The curves cross {_times(len(changes))} (first at epoch {first}, last at epoch"
            f" {changes[-1]}) and end with the test loss below the training loss.")


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


# --------------------------------------------------------------------------- comparisons
def flat_spec(spec: ExperimentSpec) -> dict[str, Any]:
    """The result-changing keys of a spec, flattened so two specs can be diffed key by key."""
    d = spec.result_dict()
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "hog":
            for hk, hv in (v or {"pixels_per_cell": None, "orientations": None}).items():
                out[f"hog.{hk}"] = hv
        elif k == "optimizer":
            for ok_, ov in v.items():
                out[f"optimizer.{ok_}"] = ov
        elif k == "conv":
            out["conv"] = " → ".join(
                f"{c['filters']}@{c['kernel']}x{c['kernel']} {c['activation']}" for c in v) or "none"
        elif isinstance(v, list):
            out[k] = tuple(v)
        else:
            out[k] = v
    return out


def key_label(key: str) -> str:
    if key.startswith("optimizer."):
        return key.split(".", 1)[1]
    return KEY_LABELS.get(key, key)


@dataclass(frozen=True)
class Comparison:
    """Two measured experiments that differ in exactly one key."""

    key: str
    label: str
    a: str
    b: str
    value_a: str
    value_b: str
    acc_a: float
    acc_b: float
    loss_a: float | None
    loss_b: float | None
    significant: bool
    sentence: str

    @property
    def winner_value(self) -> str | None:
        if not self.significant:
            return None
        return self.value_a if self.acc_a > self.acc_b else self.value_b


def accuracy_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def compare(a: Run, b: Run, key: str) -> Comparison:
    fa, fb = flat_spec(a.spec), flat_spec(b.spec)
    va, vb = value_str(fa[key]), value_str(fb[key])
    acc_a, acc_b = a.test_accuracy or 0.0, b.test_accuracy or 0.0
    se = math.hypot(accuracy_se(acc_a, a.n_test), accuracy_se(acc_b, b.n_test))
    diff = acc_a - acc_b
    significant = abs(diff) >= 2 * se
    label = key_label(key)
    sentence = (f"{label} {va} vs {vb} ({a.name} vs {b.name}): test accuracy {pct(acc_a)} vs {pct(acc_b)}"
                f" ({points(diff)} points), test loss {num(a.test_loss)} vs {num(b.test_loss)}")
    if significant:
        sentence += f": {label} {va if diff > 0 else vb} is better."
    else:
        sentence += f": the difference is within two standard errors ({100 * 2 * se:.2f} points), not significant."
    return Comparison(key, label, a.name, b.name, va, vb, acc_a, acc_b, a.test_loss, b.test_loss,
                      significant, sentence)


def one_key_pairs(runs: Sequence[Run]) -> list[tuple[Run, Run, str]]:
    """Pairs of measured runs whose specs differ in exactly one key (declaration order)."""
    measured = [r for r in runs if r.status == "ok" and r.measured]
    flats = {r.name: flat_spec(r.spec) for r in measured}
    out = []
    for a, b in combinations(measured, 2):
        fa, fb = flats[a.name], flats[b.name]
        diff = [k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)]
        if len(diff) == 1:
            out.append((a, b, diff[0]))
    return out


def comparisons(runs: Sequence[Run]) -> list[Comparison]:
    return [compare(a, b, key) for a, b, key in one_key_pairs(runs)]


def comparison_summaries(comps: Sequence[Comparison]) -> list[str]:
    """One line per varied key: who won how often."""
    by_key: dict[str, list[Comparison]] = {}
    for c in comps:
        by_key.setdefault(c.key, []).append(c)
    out = []
    for key, items in by_key.items():
        label = key_label(key)
        wins: dict[str, int] = {}
        for c in items:
            if c.winner_value is not None:
                wins[c.winner_value] = wins.get(c.winner_value, 0) + 1
        n = len(items)
        if not wins:
            out.append(f"Effect of the {label}: no significant difference in {plural(n, 'comparison')}.")
            continue
        ranked = sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))
        bits = [f"{label} {v} was significantly better in {k} of {plural(n, 'comparison')}" for v, k in ranked]
        ties = n - sum(wins.values())
        text = f"Effect of the {label}: " + "; ".join(bits)
        if ties:
            text += f"; {plural(ties, 'comparison')} showed no significant difference"
        out.append(text + ".")
    return out


# --------------------------------------------------------------------------- parts
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
    runs = [r for r in runs if r.spec.part == part]
    best = best_run(runs)
    rows = tuple(
        PartRow(
            name=r.name, model=short_model(r.spec), n_params=r.n_params, batch_size=r.spec.batch_size,
            epochs=r.spec.epochs, status=r.status, test_loss=r.test_loss, test_accuracy=r.test_accuracy,
            macro_f1=r.macro_f1, best_epoch=r.facts["best_epoch"] if r.result else None,
            epochs_run=r.facts["epochs_run"] if r.result else 0, duration_s=r.duration_s,
            chosen=r.spec.chosen, best=best is not None and r.name == best.name,
        )
        for r in runs
    )
    comps = comparisons(runs)
    warnings = []
    measured = [r for r in runs if r.status == "ok" and r.measured]
    if len(measured) < min_variants:
        warnings.append(f"Only {len(measured)} of the at least {min_variants} required variants of this part"
                        " have a successful result.")
    not_run = [r.name for r in runs if r.status == NOT_RUN]
    if not_run:
        warnings.append("Not run yet: " + ", ".join(not_run) + ".")
    bad = [f"{r.name} ({r.status})" for r in runs if r.status in ("failed", "diverged")]
    if bad:
        warnings.append("Failed or diverged: " + ", ".join(bad) + ".")
    if best:
        best_sentence = (f"Best model of this part: {best.name} — test accuracy {pct(best.test_accuracy)},"
                         f" test loss {num(best.test_loss)}, macro F1 {num(best.macro_f1)},"
                         f" {fmt(best.n_params)} parameters.")
    else:
        best_sentence = "No successful result yet in this part."
    return PartSummary(part, PART_TITLES.get(part, part), rows, best.name if best else None, best_sentence,
                       tuple(comps), tuple(part_conclusions(runs, best, comps)), tuple(warnings))


def part_conclusions(runs: Sequence[Run], best: Run | None, comps: Sequence[Comparison]) -> list[str]:
    measured = [r for r in runs if r.status == "ok" and r.measured]
    if not measured:
        return ["No conclusions yet: no experiment of this part has a successful result."]
    out = []
    ranked = sorted(measured, key=sort_key_best)
    if best:
        worst = ranked[-1]
        out.append(f"{best.name} has the best test accuracy ({pct(best.test_accuracy)}); {worst.name} the lowest"
                   f" ({pct(worst.test_accuracy)}), a spread of {points(best.test_accuracy - worst.test_accuracy)[1:]}"
                   f" points over {plural(len(measured), 'model')}.")
    chosen = [r for r in runs if r.spec.chosen]
    if chosen and best:
        c = chosen[0]
        if c.name == best.name:
            out.append(f"The chosen model ({c.name}) is also the most accurate one.")
        elif c.measured:
            out.append(f"The chosen model ({c.name}, {pct(c.test_accuracy)}) is {points(best.test_accuracy - c.test_accuracy)[1:]}"
                       f" points below the best; it has {fmt(c.n_params)} parameters vs {fmt(best.n_params)}.")
    out += comparison_summaries(comps)
    over = []
    for r in measured:
        f = r.facts
        if f["best_epoch"] and f["best_epoch"] < f["epochs_run"] and f["min_test_loss"] and \
                f["test_loss_rise"] / f["min_test_loss"] > OVERFIT_RISE:
            over.append(f"{r.name} (best epoch {f['best_epoch']} of {f['epochs_run']},"
                        f" test loss {100 * f['test_loss_rise'] / f['min_test_loss']:+.0f}%)")
    if over:
        out.append(f"Over-fitting (test loss up more than {100 * OVERFIT_RISE:.0f}% after its minimum) in"
                   f" {len(over)} of {len(measured)}: " + "; ".join(over) + ".")
    else:
        out.append(f"None of the {plural(len(measured), 'model')} over-fits by that measure (test loss up more than"
                   f" {100 * OVERFIT_RISE:.0f}% after its minimum).")
    pairs = part_confusions(measured)
    if pairs:
        out.append("Summed over the part's models, the most frequent confusions are: "
                   + "; ".join(f"{p['true_name']} → {p['predicted_name']} ({fmt(p['count'])})" for p in pairs) + ".")
    return out


def part_confusions(runs: Sequence[Run], top: int = 3) -> list[dict]:
    mats = [np.asarray(r.result["confusion"]) for r in runs if r.result and r.result.get("confusion")]
    mats = [m for m in mats if m.ndim == 2 and m.shape == mats[0].shape]
    if not mats:
        return []
    return metrics.confused_pairs(sum(mats), runs[0].class_names, top=top)


# --------------------------------------------------------------------------- question 1
@dataclass(frozen=True)
class OptimizerUse:
    name: str
    title: str
    args: tuple[tuple[str, str, str, str], ...]  # (argument, value used, Keras default, meaning)
    experiments: tuple[str, ...]


@dataclass(frozen=True)
class LearningAlgorithm:
    uses: tuple[OptimizerUse, ...]
    uniform: bool
    sentences: tuple[str, ...]
    rmsprop: bool  # at least one experiment uses RMSprop (its equations are shown)
    momentum: tuple[str, ...]  # the distinct momentum values used with RMSprop
    centered: tuple[str, ...]  # the distinct centered values used with RMSprop


def learning_algorithm(specs: Sequence[ExperimentSpec]) -> LearningAlgorithm:
    groups: dict[tuple, list[str]] = {}
    for s in specs:
        groups.setdefault((s.optimizer.name, s.optimizer.args), []).append(s.name)
    uses = []
    for (name, args), names in groups.items():
        defaults = OPTIMIZERS.get(name, {})
        rows = tuple((k, value_str(v), value_str(defaults[k]) if k in defaults else "—", ARG_MEANINGS.get(k, ""))
                     for k, v in args)
        uses.append(OptimizerUse(name, OPTIMIZER_TITLES.get(name, name), rows, tuple(names)))
    sentences = []
    n = len(specs)
    if len(uses) == 1:
        u = uses[0]
        all_default = all(v == d for _, v, d, _ in u.args)
        sentences.append(f"All {plural(n, 'experiment')} use {u.title} with "
                         + ", ".join(f"{k} = {v}" for k, v, _, _ in u.args)
                         + (" (the Keras defaults)." if all_default else "."))
    else:
        sentences.append(f"The experiments do not all use the same optimizer settings ({len(uses)} different ones):")
        for u in uses:
            sentences.append(f"{u.title}(" + ", ".join(f"{k}={v}" for k, v, _, _ in u.args) + ") in "
                             + plural(len(u.experiments), "experiment") + ": " + ", ".join(u.experiments) + ".")
    if specs:
        bs = sorted({s.batch_size for s in specs})
        ep = sorted({s.epochs for s in specs})
        sentences.append(
            f"The weights are updated once per mini-batch of {_range(bs)} examples,"
            f" for {_range(ep)} epochs (passes over the 60,000 training images); the gradients g"
            " are computed by back-propagation of the categorical cross-entropy.")
    rms = [s for s in specs if s.optimizer.name == "rmsprop"]
    momentum = tuple(sorted({value_str(s.optimizer.as_dict().get("momentum", 0.0)) for s in rms}))
    centered = tuple(sorted({value_str(s.optimizer.as_dict().get("centered", False)) for s in rms}))
    return LearningAlgorithm(tuple(uses), len(uses) == 1, tuple(sentences), bool(rms), momentum, centered)


def _range(values: Sequence[int]) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(values[0])} to {fmt(values[-1])}"


# --------------------------------------------------------------------------- question 2
@dataclass(frozen=True)
class LayerRow:
    description: str
    output_shape: str
    weights_formula: str
    biases: int
    n_params: int


@dataclass(frozen=True)
class ModelComplexity:
    part: str
    name: str
    why: str  # "chosen" or the reason another model is described
    inputs: str
    n_inputs: int
    outputs: str
    topology: str
    rows: tuple[LayerRow, ...]
    sentences: tuple[str, ...]
    total: int
    weights: int
    biases: int
    keras_check: str


def model_complexity(spec: ExperimentSpec, result: dict | None = None, why: str = "chosen") -> ModelComplexity:
    b = breakdown(spec)
    layers = b.layers
    sentences = []
    convs = iter(spec.conv)
    first = layers[0].output_shape
    prev_label = f"Input ({'x'.join(str(d) for d in first)})"
    for layer in layers[1:]:
        shape = "x".join(str(d) for d in layer.output_shape)
        if layer.kind == "conv":
            conv = next(convs)
            c_in = _in_channels(layers, layer)
            k, f = conv.kernel, conv.filters
            sentences.append(
                f"{prev_label} → {layer.description}: ({k} x {k} x {c_in} + 1) x {f} = {fmt(layer.n_params)}"
                f" parameters ({layer.weights_formula} weights + {fmt(layer.biases)} biases); output {shape}.")
        elif layer.kind in ("dense", "output"):
            sentences.append(
                f"{prev_label} → {layer.description}: {layer.weights_formula} weights; {fmt(layer.biases)} biases"
                f" ({fmt(layer.n_params)} parameters).")
        if layer.kind in ("dense", "output"):
            prev_label = layer.description
        elif layer.kind == "flatten":
            prev_label = f"Flatten ({fmt(layer.units)})"
        elif layer.kind in ("conv", "pool"):
            prev_label = f"{layer.description.split('(')[0]} ({shape})"
    free = sorted({layer.description.split("(")[0].strip() for layer in layers[1:] if layer.kind in ("pool", "flatten", "dropout")})
    if free:
        sentences.append(" and ".join(free) + (" have" if len(free) > 1 else " has") + " no parameters.")
    trainable = b.trainable
    w_terms = [fmt(layer.weights) for layer in trainable]
    b_terms = [fmt(layer.biases) for layer in trainable]
    sentences.append(f"Weights: {' + '.join(w_terms)} = {fmt(b.weights)}; biases: {' + '.join(b_terms)} = {fmt(b.biases)};"
                     f" total {fmt(b.weights)} + {fmt(b.biases)} = {fmt(b.total)} trainable parameters.")
    keras = (result or {}).get("params", {}).get("keras_total") if result else None
    if isinstance(keras, int):
        keras_check = (f"Keras' count_params() for the trained model: {fmt(keras)}"
                       + (" (the same)." if keras == b.total else f" — DIFFERENT from {fmt(b.total)}: report this bug."))
    else:
        keras_check = "Not cross-checked with Keras yet (the model has not been run)."
    rows = tuple(LayerRow(layer.description, " x ".join(fmt(d) for d in layer.output_shape),
                          layer.weights_formula or "—", layer.biases, layer.n_params) for layer in layers)
    topology = " → ".join(" x ".join(fmt(d) for d in layer.output_shape) for layer in layers
                          if layer.kind != "dropout")
    return ModelComplexity(spec.part, spec.name, why, inputs_text(spec), b.n_inputs, outputs_text(spec), topology,
                           rows, tuple(sentences), b.total, b.weights, b.biases, keras_check)


def _in_channels(layers: Sequence, layer) -> int:
    i = layers.index(layer)
    return layers[i - 1].output_shape[-1] if i > 0 and len(layers[i - 1].output_shape) == 3 else 1


def chosen_run(part: str, runs: Sequence[Run]) -> tuple[Run | None, str]:
    """The part's chosen model, else its best measured one, else its first declared one."""
    mine = [r for r in runs if r.spec.part == part]
    if not mine:
        return None, ""
    for r in mine:
        if r.spec.chosen:
            return r, "chosen"
    best = best_run(mine)
    if best:
        return best, "no model of this part is marked chosen = true; this is the most accurate one"
    return mine[0], "no model of this part is marked chosen = true; this is the first one declared"


# --------------------------------------------------------------------------- question 3
@dataclass(frozen=True)
class CapacityRow:
    part: str
    title: str
    kind: str  # shallow | deep
    n_models: int
    params_min: int
    params_max: int
    acc_min: float | None
    acc_max: float | None


@dataclass(frozen=True)
class Capacity:
    rows: tuple[CapacityRow, ...]
    sentences: tuple[str, ...]
    answer: str


def _kind(spec: ExperimentSpec) -> str:
    return "deep" if spec.conv else "shallow"


def capacity(runs: Sequence[Run]) -> Capacity:
    """Question 3 from the successful runs (diverged/failed ones measure nothing about capacity)."""
    measured = [r for r in runs if r.status == "ok" and r.measured]
    pool = measured or list(runs)
    basis = "measured" if measured else "declared (not yet measured)"
    rows = []
    for part in PARTS:
        mine = [r for r in pool if r.spec.part == part]
        if not mine:
            continue
        ps = [r.n_params for r in mine]
        accs = [r.test_accuracy for r in mine if r.test_accuracy is not None]
        rows.append(CapacityRow(part, PART_TITLES[part], _kind(mine[0].spec), len(mine), min(ps), max(ps),
                                min(accs) if accs else None, max(accs) if accs else None))
    sentences: list[str] = []
    answers: list[str] = []
    for dataset in ("mnist", "fashion"):
        sh = [r for r in pool if r.spec.dataset == dataset and _kind(r.spec) == "shallow"]
        dp = [r for r in pool if r.spec.dataset == dataset and _kind(r.spec) == "deep"]
        if not (sh and dp):
            continue
        s_lo, s_hi = min(sh, key=lambda r: r.n_params), max(sh, key=lambda r: r.n_params)
        d_lo, d_hi = min(dp, key=lambda r: r.n_params), max(dp, key=lambda r: r.n_params)
        title = dataset_title(dataset)
        text = (f"On {title}, the {basis} shallow networks (MLPs) have {fmt(s_lo.n_params)} to"
                f" {fmt(s_hi.n_params)} parameters and the deep networks (CNNs) {fmt(d_lo.n_params)} to"
                f" {fmt(d_hi.n_params)}")
        if d_hi.n_params < s_lo.n_params:
            text += (f": even the largest CNN ({d_hi.name}) has {s_lo.n_params / d_hi.n_params:.1f} times fewer"
                     f" parameters than the smallest MLP ({s_lo.name}).")
            verdict = f"on {title} every CNN has fewer weights than every MLP"
        elif d_lo.n_params > s_hi.n_params:
            text += (f": the smallest CNN ({d_lo.name}) has {d_lo.n_params / s_hi.n_params:.1f} times more"
                     f" parameters than the largest MLP ({s_hi.name}).")
            verdict = f"on {title} every CNN has more weights than every MLP"
        else:
            text += ": the two ranges overlap."
            verdict = f"on {title} the parameter counts of CNNs and MLPs overlap"
        sentences.append(text)
        sbest, dbest = best_run(sh), best_run(dp)
        if sbest and dbest:
            d = dbest.test_accuracy - sbest.test_accuracy
            sentences.append(f"Best test accuracy on {title}: MLP {sbest.name} {pct(sbest.test_accuracy)}"
                             f" ({fmt(sbest.n_params)} parameters), CNN {dbest.name} {pct(dbest.test_accuracy)}"
                             f" ({fmt(dbest.n_params)} parameters): {points(d)} points for the CNN.")
            verdict += (f", and the best CNN is {'more' if d > 0 else 'less' if d < 0 else 'as'} accurate"
                        f" {'than' if d else 'as'} the best MLP ({points(d)} points)")
        answers.append(verdict)
    example = _worked_example(pool if measured else runs)
    if example:
        sentences.append(example)
    shallow_max = max((r.n_params for r in pool if _kind(r.spec) == "shallow"), default=None)
    big = max((r for r in pool if r.spec.conv), key=lambda r: r.n_params, default=None)
    if big:
        layer = max(big.breakdown.layers, key=lambda layer: layer.n_params)
        share = layer.n_params / big.n_params if big.n_params else 0.0
        text = (f"Where the parameters of a CNN are: in the largest one, {big.name} ({fmt(big.n_params)} parameters"
                f"{', more than any MLP here' if shallow_max is not None and big.n_params > shallow_max else ''}),"
                f" the layer {layer.description} alone holds {fmt(layer.n_params)} ({100 * share:.1f}%):"
                f" {layer.weights_formula} weights.")
        if layer.kind == "dense":
            text += (" Convolutions share one small kernel over the whole image, so their cost does not grow"
                     " with the image size; the dense layer after Flatten is what costs.")
        sentences.append(text)
    if not answers:
        answer = "Not enough measured models of both kinds (MLP and CNN on the same data) yet to compare."
    else:
        fewer = all("fewer" in a for a in answers)
        more = all("more weights" in a for a in answers)
        head = "No" if fewer else "Yes" if more else "Not systematically"
        answer = (f"{head}, counted in weights: " + "; ".join(answers) + ". "
                  "Depth gives capacity through structure — local receptive fields, weights shared across"
                  " positions, features built on features — rather than through the number of weights.")
    return Capacity(tuple(rows), tuple(sentences), answer)


def _worked_example(runs: Sequence[Run]) -> str:
    mlp, _ = chosen_run("raw", runs)
    cnn, _ = chosen_run("cnn", runs)
    if not (mlp and cnn):
        return ""
    a, b = mlp.breakdown, cnn.breakdown
    text = (f"Worked example: the chosen raw-pixel MLP {mlp.name} has {b_total(a)} = {fmt(a.total)} parameters;"
            f" the chosen CNN {cnn.name} has {b_total(b)} = {fmt(b.total)}")
    ratio = a.total / b.total if b.total else math.inf
    text += (f", so the MLP has {ratio:.1f} times as many." if ratio >= 1
             else f", so the CNN has {1 / ratio:.1f} times as many.")
    if mlp.measured and cnn.measured:
        d = cnn.test_accuracy - mlp.test_accuracy
        text += (f" Test accuracy: MLP {pct(mlp.test_accuracy)}, CNN {pct(cnn.test_accuracy)}"
                 f" ({points(d)} points for the CNN).")
    return text


def b_total(b: Breakdown) -> str:
    return " + ".join(fmt(layer.n_params) for layer in b.trainable)


# --------------------------------------------------------------------------- appendix
@dataclass(frozen=True)
class Timing:
    name: str
    part: str
    status: str
    epochs_run: int
    duration_s: float | None
    epoch_s: float | None


def timings(runs: Sequence[Run]) -> tuple[tuple[Timing, ...], float]:
    rows = []
    for r in runs:
        res = r.result or {}
        ep = res.get("epoch_s")
        rows.append(Timing(r.name, r.spec.part, r.status, r.facts["epochs_run"] if r.result else 0, r.duration_s,
                           float(ep) if isinstance(ep, (int, float)) else None))
    total = sum(t.duration_s for t in rows if t.duration_s is not None)
    return tuple(rows), total


@dataclass(frozen=True)
class Problem:
    name: str
    status: str
    error: str


def problems(runs: Sequence[Run]) -> tuple[Problem, ...]:
    return tuple(Problem(r.name, r.status, str((r.result or {}).get("error") or ""))
                 for r in runs if r.status in ("failed", "diverged", NOT_RUN))


@dataclass(frozen=True)
class DataChecksum:
    dataset: str
    sha256: str
    source: str
    n_train: int | None
    n_test: int | None
    experiments: int


def data_checksums(runs: Sequence[Run]) -> tuple[DataChecksum, ...]:
    seen: dict[tuple, list[str]] = {}
    info: dict[tuple, dict] = {}
    for r in runs:
        d = (r.result or {}).get("data") or {}
        if not d:
            continue
        key = (d.get("dataset", r.spec.dataset), d.get("sha256", ""), d.get("source", ""),
               d.get("n_train"), d.get("n_test"))
        seen.setdefault(key, []).append(r.name)
        info[key] = d
    return tuple(DataChecksum(k[0], k[1], k[2], k[3], k[4], len(v)) for k, v in seen.items())


def versions_used(runs: Sequence[Run]) -> tuple[tuple[str, str, int], ...]:
    """(package, version, number of experiments) for every version seen in the results."""
    count: dict[tuple[str, str], int] = {}
    for r in runs:
        for k, v in ((r.result or {}).get("versions") or {}).items():
            count[(k, str(v))] = count.get((k, str(v)), 0) + 1
    return tuple((k, v, n) for (k, v), n in sorted(count.items()))


__all__ = [
    "Run", "PartSummary", "PartRow", "Comparison", "LearningAlgorithm", "ModelComplexity", "Capacity",
    "observations", "hyperparameters", "model_description", "short_model", "part_summary", "learning_algorithm",
    "model_complexity", "chosen_run", "capacity", "timings", "problems", "data_checksums", "versions_used",
    "best_run", "comparisons", "one_key_pairs", "pct", "num", "seconds",
]
