"""One-key comparisons: two measured experiments whose settings differ in exactly one key.

A difference in test accuracy is called "not significant" when it is smaller than two
standard errors of the difference of two proportions measured on their test sets
(sqrt(p(1-p)/n) each; about 0.2 points at 98 % on 10,000 images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Sequence

from labreport.report.claims import ratio, count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401
from labreport.report.describe import KEY_LABELS, conv_text, value_str
from labreport.config.spec import ExperimentSpec


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
            out["conv"] = conv_text(spec)
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
    ra, rb = f"results:{a.name}/metrics", f"results:{b.name}/metrics"
    sentence = (f"{label} {va} vs {vb} ({a.name} vs {b.name}): test accuracy"
                f" {pct(acc_a, what=f'test accuracy of {a.name}', src=f'{ra}/test_accuracy')} vs"
                f" {pct(acc_b, what=f'test accuracy of {b.name}', src=f'{rb}/test_accuracy')}"
                f" ({points(diff, what=f'test accuracy of {a.name} minus {b.name}', src=f'formula: {ra}/test_accuracy − {rb}/test_accuracy')} points),"
                f" test loss {num(a.test_loss, what=f'test loss of {a.name}', src=f'{ra}/test_loss')} vs"
                f" {num(b.test_loss, what=f'test loss of {b.name}', src=f'{rb}/test_loss')}")
    if significant:
        sentence += f": {label} {va if diff > 0 else vb} is better."
    else:
        sentence += f": the difference is within two standard errors ({ratio(100 * 2 * se, 2, what='two standard errors, in points')} points), not significant."
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
