"""How a model is described in words: data set, inputs, outputs, layers, hyper-parameters.

Pure: specs in, strings out; every number through :mod:`labreport.report.claims`.
"""

from __future__ import annotations

from typing import Any

from labreport.report.claims import count as fmt, num, pct, plural, points, signed, seconds  # noqa: F401
from labreport.config.param_counts import breakdown
from labreport.config.spec import CLASS_NAMES, IMAGE_SIDE, OPTIMIZERS, ExperimentSpec

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


def conv_text(spec: ExperimentSpec) -> str:
    """The convolution stack in one line: '9@5x5 relu → 9@5x5 relu → 16@3x3 relu' ('none' without one)."""
    return " → ".join(f"{c.filters}@{c.kernel}x{c.kernel} {c.activation}" for c in spec.conv) or "none"


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
