"""Question 3: do the deep networks have more capacity (weights) than the shallow ones?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401
from labreport.report import claims
from labreport.report.describe import dataset_title
from labreport.report.q2 import chosen_run
from labreport.config.param_counts import Breakdown
from labreport.config.spec import PART_TITLES, PARTS, ExperimentSpec


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
    measured = [r for r in runs if r.ok]
    pool = measured or list(runs)
    basis = "measured" if measured else "declared (not yet measured)"
    rows = []
    for part in PARTS:
        mine = [r for r in pool if r.spec.part == part]
        if not mine:
            continue
        ps = [r.n_params for r in mine]
        accs = [r.headline_accuracy for r in mine if r.headline_accuracy is not None]
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
            text += (f": even the largest CNN ({d_hi.name}) has {claims.ratio(s_lo.n_params / d_hi.n_params)} times fewer"
                     f" parameters than the smallest MLP ({s_lo.name}).")
            verdict = f"on {title} every CNN has fewer weights than every MLP"
        elif d_lo.n_params > s_hi.n_params:
            text += (f": the smallest CNN ({d_lo.name}) has {claims.ratio(d_lo.n_params / s_hi.n_params)} times more"
                     f" parameters than the largest MLP ({s_hi.name}).")
            verdict = f"on {title} every CNN has more weights than every MLP"
        else:
            text += ": the two ranges overlap."
            verdict = f"on {title} the parameter counts of CNNs and MLPs overlap"
        sentences.append(text)
        sbest, dbest = best_run(sh), best_run(dp)
        if sbest and dbest:
            d = dbest.headline_accuracy - sbest.headline_accuracy
            sentences.append(f"Best test accuracy on {title}: MLP {sbest.name} {pct(sbest.headline_accuracy)}"
                             f" ({fmt(sbest.n_params)} parameters), CNN {dbest.name} {pct(dbest.headline_accuracy)}"
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
                f" the layer {layer.description} alone holds {fmt(layer.n_params)} ({claims.share(share)}):"
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
    with claims.about(source=f"config:{mlp.name}/layers"):
        text = (f"Worked example: the chosen raw-pixel MLP {mlp.name} has {b_total(a)} ="
                f" {fmt(a.total, what=f'parameters of {mlp.name}', src=f'config:{mlp.name}/total')} parameters;")
    with claims.about(source=f"config:{cnn.name}/layers"):
        text += (f" the chosen CNN {cnn.name} has {b_total(b)} ="
                 f" {fmt(b.total, what=f'parameters of {cnn.name}', src=f'config:{cnn.name}/total')}")
    ratio = a.total / b.total if b.total else math.inf
    how = f"formula: config:{mlp.name}/total ÷ config:{cnn.name}/total"
    text += (f", so the MLP has {claims.ratio(ratio, what='parameters of the MLP per parameter of the CNN', src=how)}"
             " times as many." if ratio >= 1 else
             f", so the CNN has {claims.ratio(1 / ratio, what='parameters of the CNN per parameter of the MLP', src=how)}"
             " times as many.")
    if mlp.ok and cnn.ok:
        d = cnn.headline_accuracy - mlp.headline_accuracy
        text += (f" Test accuracy: MLP {pct(mlp.headline_accuracy)}, CNN {pct(cnn.headline_accuracy)}"
                 f" ({points(d)} points for the CNN).")
    return text


def b_total(b: Breakdown) -> str:
    return " + ".join(fmt(layer.n_params) for layer in b.trainable)
