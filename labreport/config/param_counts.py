"""Per-layer parameter arithmetic of a spec's model, without TensorFlow.

This is the single source of the counts printed in the report (question 2): each layer
carries its numbers *and* the arithmetic that produced them. The engine cross-checks the
total against Keras' ``count_params()`` whenever it builds a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from labreport.config.spec import IMAGE_SIDE, N_CLASSES, ExperimentSpec


def fmt(n: int) -> str:
    """1256150 -> '1,256,150' (the report's thousands separator)."""
    return f"{n:,}"


@dataclass(frozen=True)
class Layer:
    """One layer of the model as the report describes it."""

    kind: str  # input | conv | pool | flatten | dense | dropout | output
    description: str  # e.g. "Conv2D(9, 5x5, same, relu)"
    output_shape: tuple[int, ...]
    weights: int = 0
    biases: int = 0
    weights_formula: str = ""  # e.g. "5 x 5 x 1 x 9 = 225"
    biases_formula: str = ""
    params_formula: str = ""  # weights and biases together, e.g. "(5 x 5 x 1 + 1) x 9 = 234"

    @property
    def n_params(self) -> int:
        return self.weights + self.biases

    @property
    def units(self) -> int:
        n = 1
        for d in self.output_shape:
            n *= d
        return n

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of one sample: a conv's weights slide over
        every output position; pooling, activations and biases are negligible and not counted."""
        if self.kind == "conv":
            h, w, _ = self.output_shape
            return h * w * self.weights
        return self.weights if self.kind in ("dense", "output") else 0

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "description": self.description,
            "output_shape": list(self.output_shape),
            "weights": self.weights,
            "biases": self.biases,
            "n_params": self.n_params,
            "weights_formula": self.weights_formula,
            "biases_formula": self.biases_formula,
            "params_formula": self.params_formula,
        }


@dataclass(frozen=True)
class Breakdown:
    layers: tuple[Layer, ...]

    @property
    def total(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def biases(self) -> int:
        return sum(layer.biases for layer in self.layers)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of one sample (see ``Layer.macs``)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].units

    @property
    def trainable(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.n_params)

    @property
    def total_formula(self) -> str:
        parts = [fmt(layer.n_params) for layer in self.trainable]
        return " + ".join(parts) + f" = {fmt(self.total)}"

    @property
    def topology(self) -> str:
        """'784-250-10' for an MLP; conv models list their feature maps."""
        return " -> ".join(
            "x".join(str(d) for d in layer.output_shape)
            for layer in self.layers
            if layer.kind in ("input", "conv", "pool", "flatten", "dense", "output")
        )

    def as_dict(self) -> dict:
        return {
            "layers": [layer.as_dict() for layer in self.layers],
            "total": self.total,
            "weights": self.weights,
            "biases": self.biases,
            "total_formula": self.total_formula,
            "topology": self.topology,
        }


def _dense(n_in: int, n_out: int, activation: str, kind: str = "dense") -> Layer:
    suffix = " (output)" if kind == "output" else ""
    return Layer(
        kind=kind,
        description=f"Dense({n_out}, {activation}){suffix}",
        output_shape=(n_out,),
        weights=n_in * n_out,
        biases=n_out,
        weights_formula=f"{fmt(n_in)} x {fmt(n_out)} = {fmt(n_in * n_out)}",
        biases_formula=f"{fmt(n_out)}",
        params_formula=f"{fmt(n_in)} x {fmt(n_out)} + {fmt(n_out)} = {fmt(n_in * n_out + n_out)}",
    )


def breakdown(spec: ExperimentSpec) -> Breakdown:
    """The layers of ``spec``'s model with their parameter arithmetic.

    Mirrors ``models.build`` layer for layer: any change there must change this too
    (the engine's count_params() check fails loudly if they drift apart).
    """
    layers: list[Layer] = []
    if spec.conv:
        h = w = IMAGE_SIDE
        c = 1
        layers.append(Layer("input", f"Image {h}x{w}x{c} (pixels scaled to [0, 1])", (h, w, c)))
        for conv in spec.conv:
            if conv.padding == "valid":
                h, w = h - conv.kernel + 1, w - conv.kernel + 1
            k = conv.kernel
            n_w = k * k * c * conv.filters
            layers.append(
                Layer(
                    "conv",
                    f"Conv2D({conv.filters}, {k}x{k}, {conv.padding}, {conv.activation})",
                    (h, w, conv.filters),
                    weights=n_w,
                    biases=conv.filters,
                    weights_formula=f"{k} x {k} x {c} x {conv.filters} = {fmt(n_w)}",
                    biases_formula=f"{conv.filters}",
                    params_formula=f"({k} x {k} x {c} + 1) x {conv.filters} = {fmt(n_w + conv.filters)}",
                )
            )
            c = conv.filters
            if conv.pool > 1:
                h, w = h // conv.pool, w // conv.pool
                layers.append(Layer("pool", f"MaxPooling2D({conv.pool}x{conv.pool})", (h, w, c)))
        n_in = h * w * c
        layers.append(Layer("flatten", f"Flatten ({h} x {w} x {c} = {fmt(n_in)})", (n_in,)))
    elif spec.hog:
        n_in = spec.hog.n_features
        cells = IMAGE_SIDE // spec.hog.pixels_per_cell
        layers.append(
            Layer(
                "input",
                f"HOG features: {cells} x {cells} cells x {spec.hog.orientations} orientations"
                f" = {fmt(n_in)}",
                (n_in,),
            )
        )
    else:
        n_in = IMAGE_SIDE * IMAGE_SIDE
        layers.append(Layer("input", f"Raw pixels {IMAGE_SIDE} x {IMAGE_SIDE} = {fmt(n_in)}", (n_in,)))
    for units in spec.hidden:
        layers.append(_dense(n_in, units, spec.activation))
        n_in = units
        if spec.dropout > 0:
            layers.append(Layer("dropout", f"Dropout({spec.dropout:g})", (units,)))
    layers.append(_dense(n_in, N_CLASSES, "softmax", kind="output"))
    return Breakdown(tuple(layers))


def shape_problem(spec: ExperimentSpec) -> str | None:
    """Why the spec's conv stack cannot be built (feature maps shrink to nothing), or None."""
    h = IMAGE_SIDE
    for i, conv in enumerate(spec.conv, 1):
        if conv.padding == "valid":
            h = h - conv.kernel + 1
            if h < 1:
                return f"conv layer {i} ({conv.kernel}x{conv.kernel}, valid) leaves no pixels"
        if conv.pool > 1:
            if h < conv.pool:
                return (
                    f"conv layer {i}: pooling {conv.pool}x{conv.pool} on a {h}x{h} feature map"
                    " leaves no pixels"
                )
            h //= conv.pool
    return None
