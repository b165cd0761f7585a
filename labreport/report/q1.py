"""Question 1: the learning algorithm (optimizer and its arguments as used, cost function)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.report.describe import ARG_MEANINGS, OPTIMIZER_TITLES, value_str
from labreport.config.spec import OPTIMIZERS, ExperimentSpec


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
