"""Parameter arithmetic without TensorFlow (Keras cross-check lives in test_engine)."""

from __future__ import annotations

import pytest

from labreport.config.loader import load
from labreport.config.param_counts import breakdown, fmt, shape_problem
from labreport.config.spec import ConvSpec, ExperimentSpec, HogSpec, OptimizerSpec

OPT = OptimizerSpec("rmsprop", (("learning_rate", 0.001),))


def spec(**kw) -> ExperimentSpec:
    base = dict(name="x", part="raw", dataset="mnist", hidden=(250,), activation="tanh", dropout=0.5,
                batch_size=1, epochs=1, optimizer=OPT)
    base.update(kw)
    return ExperimentSpec(**base)


LAB_CNN = (ConvSpec(9, 5), ConvSpec(9, 5), ConvSpec(16, 3))


def test_mlp_on_raw_pixels_writes_out_its_arithmetic():
    b = breakdown(spec())
    assert b.total == 198_760 and b.n_inputs == 784
    dense, out = b.trainable
    assert (dense.weights, dense.biases) == (196_000, 250)
    assert dense.weights_formula == "784 x 250 = 196,000"
    assert out.params_formula == "250 x 10 + 10 = 2,510"
    assert b.total_formula == "196,250 + 2,510 = 198,760"
    assert b.topology == "784 -> 250 -> 10"
    assert [layer.kind for layer in b.layers] == ["input", "dense", "dropout", "output"]


@pytest.mark.parametrize("p,o,n_in,total", [(4, 8, 392, 392 * 200 + 200 + 2010), (7, 8, 128, 27_810),
                                             (7, 16, 256, 53_410)])
def test_mlp_on_hog_features(p, o, n_in, total):
    b = breakdown(spec(part="hog", hog=HogSpec(p, o), hidden=(200,)))
    assert b.n_inputs == n_in and b.total == total


@pytest.mark.parametrize("l4,total", [(25, 7_465), (5, 4_365), (10, 5_140), (35, 9_015)])
def test_lab_cnn(l4, total):
    b = breakdown(spec(part="cnn", conv=LAB_CNN, hidden=(l4,), dropout=0.0))
    assert b.total == total
    convs = [layer for layer in b.layers if layer.kind == "conv"]
    assert [c.params_formula for c in convs] == [
        "(5 x 5 x 1 + 1) x 9 = 234", "(5 x 5 x 9 + 1) x 9 = 2,034", "(3 x 3 x 9 + 1) x 16 = 1,312"]
    flatten = next(layer for layer in b.layers if layer.kind == "flatten")
    assert flatten.output_shape == (144,)


@pytest.mark.parametrize("filters,total,flat", [(64, 1_256_150, 12_544), (9, 177_600, 1_764)])
def test_fashion_single_conv_models(filters, total, flat):
    b = breakdown(spec(part="fashion", dataset="fashion", conv=(ConvSpec(filters, 3),), hidden=(100,),
                       activation="relu", dropout=0.0))
    assert b.total == total
    assert next(layer for layer in b.layers if layer.kind == "flatten").units == flat


def test_valid_padding_shrinks_and_unbuildable_stacks_are_explained():
    b = breakdown(spec(part="cnn", conv=(ConvSpec(4, 5, padding="valid", pool=0),), hidden=(10,)))
    assert b.layers[1].output_shape == (24, 24, 4)
    assert shape_problem(spec(conv=(ConvSpec(1, 29, padding="valid"),))) == \
        "conv layer 1 (29x29, valid) leaves no pixels"
    assert shape_problem(spec(conv=LAB_CNN)) is None


def test_every_default_experiment_has_a_consistent_breakdown():
    for s in load("experiments.toml").experiments:
        b = breakdown(s)
        assert b.total == b.weights + b.biases == sum(layer.n_params for layer in b.layers)
        assert b.layers[-1].output_shape == (10,)


def test_fmt():
    assert fmt(1256150) == "1,256,150" and fmt(7) == "7"


def test_macs_count_each_conv_weight_once_per_output_position():
    b = breakdown(spec(part="cnn", conv=LAB_CNN, hidden=(25,), dropout=0.0))
    assert b.macs == 28 * 28 * 225 + 14 * 14 * 2025 + 7 * 7 * 1296 + 144 * 25 + 25 * 10
    assert breakdown(spec()).macs == 784 * 250 + 250 * 10
