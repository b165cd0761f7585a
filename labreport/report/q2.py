"""Question 2: the complexity of each part's chosen model, with the parameter arithmetic written out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401
from labreport.report import claims
from labreport.report.describe import inputs_text, outputs_text
from labreport.config.param_counts import breakdown
from labreport.config.spec import ExperimentSpec


@dataclass(frozen=True)
class LayerRow:
    description: str
    output_shape: str
    weights_formula: str
    biases: int
    n_params: int
    biases_text: str = ""
    n_params_text: str = ""


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
    n_inputs_text: str = ""
    weights_text: str = ""
    biases_text: str = ""
    total_text: str = ""


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
    src = f"config:{spec.name}/layers"
    rows = tuple(LayerRow(layer.description, " x ".join(fmt(d) for d in layer.output_shape),
                          claims.text(layer.weights_formula, what=f"weights of {layer.description}", src=src)
                          if layer.weights_formula else "—", layer.biases, layer.n_params,
                          fmt(layer.biases, what=f"biases of {layer.description}", src=src),
                          fmt(layer.n_params, what=f"parameters of {layer.description}", src=src))
                 for layer in layers)
    topology = " → ".join(" x ".join(fmt(d) for d in layer.output_shape) for layer in layers
                          if layer.kind != "dropout")
    return ModelComplexity(spec.part, spec.name, why, inputs_text(spec), b.n_inputs, outputs_text(spec), topology,
                           rows, tuple(sentences), b.total, b.weights, b.biases, keras_check,
                           fmt(b.n_inputs, what=f"inputs of {spec.name}", src=f"config:{spec.name}/inputs"),
                           fmt(b.weights, what=f"weights of {spec.name}", src=f"config:{spec.name}/weights"),
                           fmt(b.biases, what=f"biases of {spec.name}", src=f"config:{spec.name}/biases"),
                           fmt(b.total, what=f"parameters of {spec.name}", src=f"config:{spec.name}/total"))


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
