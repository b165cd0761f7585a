"""One-key comparisons: two measured experiments whose settings differ in exactly one key.

One run each: a difference in test accuracy is called "not significant" when it is smaller
than two standard errors of the difference of two proportions measured on their test sets
(sqrt(p(1-p)/n) each; about 0.2 points at 98 % on 10,000 images).

With repeats (either side has >= 2 measured runs) the accuracies compared are the means, and
the noise of their difference combines both sources (``NOISE_RULE``): the seed spread of each
mean, s/sqrt(k) (s the sample std of its k measured runs; a side with a single run borrows the
other side's s, as its own spread is not measured), and the test-set error of each side:

    noise = sqrt(se_a^2 + se_b^2 + s_a^2/k_a + s_b^2/k_b)

and the difference is "within noise" when it is smaller than two noises.
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
    repeated: bool = False  # judged with the seed spread (the "within noise" rule)

    @property
    def winner_value(self) -> str | None:
        if not self.significant:
            return None
        return self.value_a if self.acc_a > self.acc_b else self.value_b


def accuracy_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


NOISE_RULE = ("a difference of mean test accuracies is within noise when it is smaller than two times"
              " √(se_a² + se_b² + s_a²/k_a + s_b²/k_b): se the test-set standard error √(p(1 − p)/n) of each"
              " mean accuracy p on n test images, s the sample standard deviation of the k measured runs of each"
              " experiment (a single run borrows the other side's s)")


def noise(a: Run, b: Run) -> float | None:
    """The standard error of the difference of two mean accuracies (``NOISE_RULE``), or None when
    neither side has two measured runs (the test-set rule alone applies)."""
    sa, sb = a.headline("test_accuracy"), b.headline("test_accuracy")
    if (sa.std is None and sb.std is None) or sa.mean is None or sb.mean is None:
        return None
    std_a = sa.std if sa.std is not None else sb.std
    std_b = sb.std if sb.std is not None else sa.std
    return math.sqrt(accuracy_se(sa.mean, a.n_test) ** 2 + accuracy_se(sb.mean, b.n_test) ** 2
                     + std_a ** 2 / sa.n + std_b ** 2 / sb.n)


def compare(a: Run, b: Run, key: str) -> Comparison:
    if a.repeated or b.repeated:
        return compare_means(a, b, key)
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


def compare_means(a: Run, b: Run, key: str) -> Comparison:
    """``compare`` when an experiment has repeats: means, and the "within noise" rule when a spread is measured."""
    fa, fb = flat_spec(a.spec), flat_spec(b.spec)
    va, vb = value_str(fa[key]), value_str(fb[key])
    ha, hb = a.headline("test_accuracy"), b.headline("test_accuracy")
    acc_a, acc_b = ha.mean or 0.0, hb.mean or 0.0
    sigma = noise(a, b)
    spread = sigma is not None
    if not spread:  # no spread measured on either side (one run each so far): the test-set rule
        sigma = math.hypot(accuracy_se(acc_a, a.n_test), accuracy_se(acc_b, b.n_test))
    diff = acc_a - acc_b
    significant = abs(diff) >= 2 * sigma
    label = key_label(key)

    def acc(r: Run) -> str:
        h = r.headline("test_accuracy")
        text = pct(h.mean, what=(f"mean test accuracy of {r.name}" if r.repeated else f"test accuracy of {r.name}"),
                   src=r.headline_source("test_accuracy"))
        k = fmt(h.n, what=f"measured runs of {r.name}",
                src=f"formula: runs of {r.name} with status ok in results:{r.name} and results:{r.name}/more_runs")
        return f"{text} ({k} run{'' if h.n == 1 else 's'})"

    def loss(r: Run) -> str:
        return num(r.headline("test_loss").mean, what=(f"mean test loss of {r.name}" if r.repeated
                                                       else f"test loss of {r.name}"),
                   src=r.headline_source("test_loss"))

    sa, sb = a.headline_source("test_accuracy"), b.headline_source("test_accuracy")
    sentence = (f"{label} {va} vs {vb} ({a.name} vs {b.name}): mean test accuracy {acc(a)} vs {acc(b)}"
                f" ({points(diff, what=f'mean test accuracy of {a.name} minus {b.name}', src=f'formula: ({sa}) − ({sb})')} points),"
                f" test loss {loss(a)} vs {loss(b)}")
    if not spread:
        if significant:
            sentence += f": {label} {va if diff > 0 else vb} is better."
        else:
            sentence += (f": the difference is within two standard errors"
                         f" ({ratio(100 * 2 * sigma, 2, what='two standard errors, in points')} points), not"
                         " significant (no spread between seeds measured yet).")
    else:
        noise_text = ratio(100 * 2 * sigma, 2,
                           what=f"noise of the difference {a.name} − {b.name} (two standard errors), in points",
                           src=f"formula: 2 × √(se² + se² + s²/k + s²/k) over results:{a.name} and"
                               f" results:{b.name} (and their more_runs)")
        if significant:
            sentence += f": {label} {va if diff > 0 else vb} is better (beyond the noise of {noise_text} points)."
        else:
            sentence += (f": the difference is within noise ({noise_text} points: the seed spread and the test-set"
                         " error combined).")
    return Comparison(key, label, a.name, b.name, va, vb, acc_a, acc_b, a.headline("test_loss").mean,
                      b.headline("test_loss").mean, significant, sentence, repeated=spread)


def one_key_pairs(runs: Sequence[Run]) -> list[tuple[Run, Run, str]]:
    """Pairs of measured runs whose specs differ in exactly one key (declaration order)."""
    measured = [r for r in runs if r.ok]
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
        noisy = any(c.repeated for c in items)
        none = "no difference beyond noise" if noisy else "no significant difference"
        if not wins:
            out.append(f"Effect of the {label}: {none} in {plural(n, 'comparison')}.")
            continue
        ranked = sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))
        better = "better beyond noise" if noisy else "significantly better"
        bits = [f"{label} {v} was {better} in {k} of {plural(n, 'comparison')}" for v, k in ranked]
        ties = n - sum(wins.values())
        text = f"Effect of the {label}: " + "; ".join(bits)
        if ties:
            text += f"; {plural(ties, 'comparison')} showed {none}"
        out.append(text + ".")
    return out
