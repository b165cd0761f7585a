"""models + engine on tiny synthetic data: model shapes, the result schema, seeds, divergence, quick mode.

Every test here imports TensorFlow (inside the engine); a fit takes 1-2 epochs on a
few hundred 28x28 images, so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from labreport import config
from labreport.train import datasets
from labreport.train import engine
from labreport.train import models
from labreport.config import param_counts
from labreport.config.spec import ConvSpec, ExperimentSpec, HogSpec, OptimizerSpec

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parents[1]
RMSPROP = OptimizerSpec("rmsprop", (("learning_rate", 0.001), ("rho", 0.9)))
LAB_CONV = (ConvSpec(9, 5), ConvSpec(9, 5), ConvSpec(16, 3))


def synthetic_dataset(name: str = "mnist", n_train: int = 300, n_test: int = 100, seed: int = 0) -> datasets.Dataset:
    """Learnable fake digits: class c is a bright horizontal bar at rows 2c..2c+5 on noise."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c: 2 * c + 6, 4:24] += 200
        return x.clip(0, 255).astype(np.uint8), y

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return datasets.Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                            source="synthetic")


def spec(name: str = "t", **overrides) -> ExperimentSpec:
    base = {"name": name, "part": "raw", "dataset": "mnist", "hidden": (16,), "activation": "relu",
            "dropout": 0.0, "batch_size": 64, "epochs": 2, "optimizer": RMSPROP, "seed": 1}
    base.update(overrides)
    return ExperimentSpec(**base)


FAMILIES = {
    "raw-mlp": spec("raw", hidden=(32,), activation="tanh", dropout=0.5),
    "hog-mlp": spec("hog", part="hog", hog=HogSpec(4, 8), hidden=(32,), activation="sigmoid", dropout=0.5),
    "cnn": spec("cnn", part="cnn", conv=LAB_CONV, hidden=(25,)),
    "fashion-conv": spec("fconv", part="fashion", dataset="fashion", conv=(ConvSpec(9, 3),), hidden=(100,)),
    # batch 200 in micro-batches of 64 (models.micro_batch): 64 + 64 + 64 + 8 images per step
    "cnn-micro": spec("cnnm", part="cnn", conv=LAB_CONV, hidden=(25,), batch_size=200),
}


def documented_keys() -> set[str]:
    """The top-level keys of docs/results.md's table (`schema` is added by store.write_result)."""
    keys = set()
    for line in (ROOT / "docs" / "results.md").read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            keys.update(re.findall(r"`([a-z_]+)`", first_cell))
    return keys - {"schema"}


@pytest.fixture(scope="module")
def mnist() -> datasets.Dataset:
    return synthetic_dataset("mnist")


@pytest.fixture(scope="module")
def fashion() -> datasets.Dataset:
    return synthetic_dataset("fashion", seed=1)


# --------------------------------------------------------------------------- models


def test_keras_counts_equal_params_breakdown_for_every_default_experiment():
    lab = config.load(ROOT / "experiments.toml")
    counts = {}
    for s in lab.experiments:
        model = models.build(s)  # raises on any per-layer disagreement
        counts[s.name] = model.count_params()
        assert counts[s.name] == param_counts.breakdown(s).total, s.name
    # Pinned against Keras: the numbers the lab (and LAB.md) quotes.
    assert counts["raw-tanh-250"] == 198_760
    assert counts["cnn-relu-25"] == 7_465
    assert counts["fashion-conv9-100"] == 177_600
    assert counts["fashion-conv64-100"] == 1_256_150


def test_model_layers_follow_the_spec():
    model = models.build(FAMILIES["cnn"])
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                     "Flatten", "Dense", "Dense"]
    assert model.layers[0].kernel_size == (5, 5) and model.layers[0].padding == "same"
    assert model.layers[-1].activation.__name__ == "softmax"
    mlp = models.build(FAMILIES["raw-mlp"])
    assert [type(layer).__name__ for layer in mlp.layers] == ["Dense", "Dropout", "Dense"]
    assert mlp.input_shape == (None, 784)
    assert models.build(FAMILIES["hog-mlp"]).input_shape == (None, 392)


def _gradient_graph_ops(layer, x) -> set[str]:
    import tensorflow as tf

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, layer.trainable_variables)

    return {op.type for op in grads.get_concrete_function().graph.get_operations()}


def _ours_and_keras_conv(shape, *, filters: int, kernel: int, activation: str):
    """Random input of ``shape``, and models.conv_layer's and Keras' own Conv2D, both built."""
    import keras
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random(shape, dtype=np.float32))
    layers = [cls(filters, kernel, padding="same", activation=activation)
              for cls in (models.conv_layer(), keras.layers.Conv2D)]
    for layer in layers:
        layer.build(x.shape)
    return x, *layers


def test_the_conv_layer_keeps_the_bias_gradient_out_of_onednns_slow_fused_kernel():
    # Keras' own Conv2D adds its bias through BiasAdd, whose BiasAddGrad the oneDNN build fuses
    # with Conv2DBackpropFilter (6.5x slower for the 64-filter model); ours adds it plainly.
    x, ours, stock = _ours_and_keras_conv((4, 12, 12, 1), filters=5, kernel=3, activation="relu")
    assert "BiasAddGrad" in _gradient_graph_ops(stock, x)  # why conv_layer exists
    assert {"BiasAdd", "BiasAddGrad"}.isdisjoint(_gradient_graph_ops(ours, x))
    convs = [layer for layer in models.build(FAMILIES["cnn"]).layers if layer.name.startswith("conv")]
    assert len(convs) == 3 and all(isinstance(layer, models.conv_layer()) for layer in convs)


def test_the_conv_layer_computes_what_keras_conv2d_does():
    import tensorflow as tf

    x, ours, stock = _ours_and_keras_conv((3, 10, 10, 2), filters=4, kernel=5, activation="tanh")
    bias = np.linspace(-0.5, 0.5, 4).astype(np.float32)  # a nonzero bias: the add is exercised
    stock.set_weights([ours.get_weights()[0], bias])
    ours.set_weights([ours.get_weights()[0], bias])
    assert type(ours).__name__ == "Conv2D" and ours.count_params() == stock.count_params()
    np.testing.assert_allclose(ours(x).numpy(), stock(x).numpy(), rtol=1e-6, atol=1e-6)

    def grads(layer):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return [g.numpy() for g in tape.gradient(loss, layer.trainable_variables)]

    for mine, theirs in zip(grads(ours), grads(stock), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_micro_batches_only_where_they_pay():
    lab = {s.name: s for s in config.load(ROOT / "experiments.toml").experiments}
    nine_filters = [n for n, s in lab.items() if s.conv and s.conv[0].filters == 9]
    assert len(nine_filters) == 9
    assert {models.micro_batch(lab[n]) for n in nine_filters} == {64}  # 64 x 28x28x9 floats: 1.8 MB
    assert models.micro_batch(lab["fashion-conv64-100"]) is None  # 64 filters: 8 images fit, too few
    assert all(models.micro_batch(s) is None for s in lab.values() if not s.conv)
    assert models.micro_batch(FAMILIES["cnn"]) is None  # batch 64: nothing to cut
    assert models.micro_batch(FAMILIES["cnn-micro"]) == 64
    # a large dense layer: summing its gradient per micro-batch would cost more than the cache saves
    wide = dataclasses.replace(FAMILIES["cnn-micro"], conv=(ConvSpec(9, 3, pool=1),), hidden=(500,))
    assert 4 * param_counts.breakdown(wide).total > 64 * 4 * 28 * 28 * 9
    assert models.micro_batch(wide) is None
    assert type(models.build(lab["cnn-relu-25"])).__name__ == "AccumulatingSequential"
    assert models.build(lab["cnn-relu-25"]).micro_batch == 64
    # make bench's plain-notebook baseline: Keras' own whole-batch steps, the same layers
    plain = models.build(lab["cnn-relu-25"], micro_batches=False)
    assert type(plain).__name__ == "Sequential" and plain.count_params() == 7_465
    assert type(models.build(lab["fashion-conv64-100"])).__name__ == "Sequential"


def _fit_one_epoch(spec_, x, y, micro: int | None, monkeypatch) -> tuple:
    """History, weights, evaluate() and predict() of one epoch of ``spec_``'s model, its
    steps in micro-batches of ``micro`` images (None: whole batches), from the same seed."""
    import keras

    monkeypatch.setattr(models, "micro_batch", lambda _spec: micro)
    keras.backend.clear_session()
    keras.utils.set_random_seed(5)
    model = models.build(spec_)
    assert (type(model).__name__ == "AccumulatingSequential") == bool(micro)
    model.compile(optimizer=models.optimizer(spec_), loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False, steps_per_execution=2)
    initial = [w.numpy() for w in model.weights]
    history = model.fit(x, y, batch_size=spec_.batch_size, epochs=1, shuffle=False, verbose=0).history
    weights = [w.numpy() for w in model.weights]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, weights))
    evaluated = model.evaluate(x[:130], y[:130], batch_size=100, verbose=0)
    return history, weights, evaluated, model.predict(x[:130], batch_size=100, verbose=0), moved


def test_a_micro_batched_step_is_the_whole_batch_step(mnist, monkeypatch):
    # Plain SGD: the update is the gradient itself, so any difference shows. (RMSprop divides by
    # the gradient's running root mean square, which turns float-rounding noise in a near-zero
    # gradient into a full-size step.) 400 images, batch 200: micro-batches of 48 + 48 + 48 + 48 + 8.
    sgd = OptimizerSpec("sgd", (("learning_rate", 0.5),))
    cnn = dataclasses.replace(FAMILIES["cnn-micro"], optimizer=sgd, activation="tanh")
    x = engine._scale(np.concatenate([mnist.x_train, mnist.x_train[:100]]), (28, 28, 1))
    y = engine.one_hot(np.concatenate([mnist.y_train, mnist.y_train[:100]]))
    whole = _fit_one_epoch(cnn, x, y, None, monkeypatch)
    micro = _fit_one_epoch(cnn, x, y, 48, monkeypatch)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(micro[0][key], whole[0][key], rtol=1e-5)
    assert whole[4] > 1e-3  # the two steps moved the weights: the comparison below means something
    for mine, theirs in zip(micro[1], whole[1], strict=True):
        np.testing.assert_allclose(mine, theirs, atol=2e-5)
    np.testing.assert_allclose(micro[2], whole[2], rtol=1e-5)  # test loss and accuracy, 100 + 30 images
    assert micro[3].shape == (130, 10)
    np.testing.assert_allclose(micro[3], whole[3], atol=1e-5)


def _per_micro_batch_updates() -> type:
    """The micro-batched model as first written: the loss tracker and the metrics updated by
    Keras inside the loop, once per micro-batch (the reference for the test below)."""
    import keras
    import tensorflow as tf

    class PerMicroBatch(models.accumulating_sequential()):
        def train_step(self, data):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            n, m, weights = tf.shape(x)[0], self.micro_batch, self.trainable_weights

            def body(i, grads):
                xs, ys = x[i * m:(i + 1) * m], y[i * m:(i + 1) * m]
                count = tf.shape(xs)[0]
                with tf.GradientTape() as tape:
                    y_pred = self(xs, training=True)
                    loss = self.compute_loss(x=xs, y=ys, y_pred=y_pred, training=True)
                    share = self.optimizer.scale_loss(loss * tf.cast(count, loss.dtype) / tf.cast(n, loss.dtype))
                self._loss_tracker.update_state(loss, sample_weight=count)
                self.compute_metrics(xs, ys, y_pred)
                return i + 1, [a + b for a, b in zip(grads, tape.gradient(share, weights))]

            _, grads = tf.while_loop(lambda i, _g: i < (n + m - 1) // m, body,
                                     (tf.constant(0), [tf.zeros_like(w) for w in weights]))
            self.optimizer.apply_gradients(zip(grads, weights))
            return self.get_metrics_result()

        def test_step(self, data):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            n, m = tf.shape(x)[0], self.micro_batch

            def body(i):
                xs, ys = x[i * m:(i + 1) * m], y[i * m:(i + 1) * m]
                y_pred = self(xs, training=False)
                loss = self.compute_loss(x=xs, y=ys, y_pred=y_pred, training=False)
                self._loss_tracker.update_state(loss, sample_weight=tf.shape(xs)[0])
                self.compute_metrics(xs, ys, y_pred)
                return (i + 1,)

            tf.while_loop(lambda i: i < (n + m - 1) // m, body, (tf.constant(0),))
            return self.get_metrics_result()

    return PerMicroBatch


def test_micro_batched_epoch_numbers_are_per_micro_batch_updates_to_the_bit(mnist, monkeypatch):
    # The steps update the loss tracker and the metrics once per batch (faster), carrying the
    # tracker's total through the loop: the history (training and validation loss and
    # accuracy), the weights and evaluate() must be the very floats per-micro-batch updates give,
    # so results stored before the change stay valid. Batch 200: micro-batches 64 + 64 + 64 + 8;
    # the last batch of an epoch is 100 (64 + 36); validation batch 70 (64 + 6).
    import keras

    cnn = dataclasses.replace(FAMILIES["cnn-micro"], activation="tanh")
    x = engine._scale(np.concatenate([mnist.x_train, mnist.x_train[:200]]), (28, 28, 1))
    y = engine.one_hot(np.concatenate([mnist.y_train, mnist.y_train[:200]]))
    runs = []
    for cls in (models.accumulating_sequential(), _per_micro_batch_updates()):
        monkeypatch.setattr(models, "accumulating_sequential", lambda cls=cls: cls)
        keras.backend.clear_session()
        keras.utils.set_random_seed(5)
        model = models.build(cnn)
        assert type(model) is cls and model.micro_batch == 64
        model.compile(optimizer=models.optimizer(cnn), loss="categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=False, steps_per_execution=2)
        history = model.fit(x, y, batch_size=cnn.batch_size, epochs=2, verbose=0,
                            validation_data=(x[:130], y[:130]), validation_batch_size=70).history
        runs.append((history, [w.numpy() for w in model.weights],
                     model.evaluate(x[:130], y[:130], batch_size=70, verbose=0)))
    (history, weights, evaluated), (ref_history, ref_weights, ref_evaluated) = runs
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(set(history["loss"])) == 2  # two epochs, two different losses: they were tracked
    assert history == ref_history  # float for float
    assert evaluated == ref_evaluated
    for mine, theirs in zip(weights, ref_weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_micro_batches_train_with_dropout(mnist, monkeypatch):
    cnn = dataclasses.replace(FAMILIES["cnn-micro"], dropout=0.5)
    x = engine._scale(mnist.x_train, (28, 28, 1))
    history, _weights, evaluated, predicted, _moved = _fit_one_epoch(cnn, x, engine.one_hot(mnist.y_train), 32, monkeypatch)
    assert np.isfinite(history["loss"][0]) and np.isfinite(evaluated).all()
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-5)


def test_conv_models_have_their_own_engine_version():
    assert engine.engine_version(FAMILIES["raw-mlp"]) == engine.ENGINE_VERSION
    assert engine.engine_version(FAMILIES["hog-mlp"]) == engine.ENGINE_VERSION
    assert engine.engine_version(FAMILIES["cnn"]) == f"{engine.ENGINE_VERSION}+conv{engine.CONV_ENGINE_VERSION}"
    assert engine.versions(FAMILIES["cnn"], with_tf=False)["engine"] == engine.engine_version(FAMILIES["cnn"])


def test_check_params_names_the_disagreeing_layer():
    model = models.build(spec(hidden=(16,)))
    with pytest.raises(RuntimeError, match=r"dense1: Keras counts 12,560, param_counts.breakdown says Dense\(17, relu\) = 13,345"):
        models.check_params(model, spec(hidden=(17,)))


def test_build_refuses_features_of_the_wrong_length():
    with pytest.raises(ValueError, match="expects 392 inputs, got 128"):
        models.build(FAMILIES["hog-mlp"], 128)


def test_optimizer_uses_the_spec_arguments():
    opt = models.optimizer(spec(optimizer=OptimizerSpec("rmsprop", (("learning_rate", 0.002), ("rho", 0.8)))))
    assert type(opt).__name__ == "RMSprop"
    assert opt.rho == pytest.approx(0.8)
    assert float(opt.learning_rate) == pytest.approx(0.002)
    assert type(models.optimizer(spec(optimizer=OptimizerSpec("adam", ())))).__name__ == "Adam"
    sgd = models.optimizer(spec(optimizer=OptimizerSpec("sgd", (("momentum", 0.5),))))
    assert type(sgd).__name__ == "SGD" and sgd.momentum == pytest.approx(0.5)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_trains_and_returns_the_documented_result(family, mnist, fashion):
    s = FAMILIES[family]
    epochs_seen = []
    lines = []
    result = engine.train_and_evaluate(s, fashion if s.dataset == "fashion" else mnist, cache_key="k",
                                       log=lines.append, on_epoch=epochs_seen.append)
    assert result["status"] == "ok", result["error"]
    assert documented_keys() <= set(result), documented_keys() - set(result)
    json.dumps(result, allow_nan=False)  # store writes strict JSON
    assert result["params"]["keras_total"] == param_counts.breakdown(s).total == result["params"]["total"]
    assert result["data"] == {"dataset": s.dataset, "sha256": (fashion if s.dataset == "fashion" else mnist).sha256,
                              "source": "synthetic", "n_train": 300, "n_test": 100}
    assert {k: len(v) for k, v in result["history"].items()} == dict.fromkeys(
        ("loss", "accuracy", "val_loss", "val_accuracy"), 2)
    m = result["metrics"]
    assert m["test_loss"] == result["history"]["val_loss"][-1]
    assert m["epochs_run"] == 2 and 0.0 <= m["macro_f1"] <= 1.0
    for key in ("test_accuracy", "train_loss", "train_accuracy", "best_epoch", "min_test_loss",
                "final_gap", "cross_epoch", "test_loss_rise"):
        assert key in m
    cm = np.array(result["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 100
    assert np.trace(cm) / 100 == pytest.approx(m["test_accuracy"], abs=0.011)
    assert len(result["per_class"]) == 10 and result["class_names"] == s.class_names
    assert [e.epoch for e in epochs_seen] == [1, 2] and epochs_seen[-1].val_loss == pytest.approx(m["test_loss"])
    assert result["versions"]["tensorflow"] and result["versions"]["engine"] == engine.engine_version(s)
    assert result["host"]["threads"]["intra_op"] >= 1
    assert result["epoch_s"] > 0 and result["duration_s"] > 0
    assert any(line.startswith("epoch 2/2") for line in lines)


def test_the_raw_mlp_learns_the_synthetic_digits(mnist):
    result = engine.train_and_evaluate(spec(hidden=(32,), epochs=3, batch_size=32), mnist)
    assert result["metrics"]["test_accuracy"] > 0.9  # the bars are trivially separable


def test_same_seed_gives_the_same_numbers(mnist):
    s = FAMILIES["raw-mlp"]
    first = engine.train_and_evaluate(s, mnist)
    second = engine.train_and_evaluate(s, mnist)
    assert first["history"] == second["history"]
    assert first["confusion"] == second["confusion"]
    other = engine.train_and_evaluate(dataclasses.replace(s, seed=2), mnist)
    assert other["history"] != first["history"]


def test_keras_array_pipelines_run_without_autotuning():
    """The pipelines Keras builds from arrays carry data_options (no autotuning thread, whose
    teardown left workers idle ~1.3 s an epoch); if a Keras upgrade moves the adapter, this fails."""
    tf = engine.tensorflow()
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    x = np.zeros((10, 3), "float32")
    ds = ArrayDataAdapter(x, x, batch_size=4, shuffle=True).get_tf_dataset()
    assert isinstance(ds, tf.data.Dataset)
    assert ds.options().autotune.enabled is False
    assert engine.data_options().autotune.enabled is False


def test_without_autotuning_the_numbers_are_the_same_to_the_bit(mnist):
    """Autotuning only sizes buffers and parallelism: the same history and predictions with
    Keras' own pipeline (shuffled batches, a partial last batch, several steps per execution)."""
    engine.tensorflow()
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    s = spec(hidden=(16,), batch_size=5, epochs=2)  # 60 steps of 5 (>= 50: steps_per_execution 32)
    assert engine.steps_per_execution(len(mnist.y_train), s.batch_size) > 1
    x = np.zeros((10, 3), "float32")
    ours = engine.train_and_evaluate(s, mnist)
    with engine.keras_autotuning():
        assert ArrayDataAdapter(x, x, batch_size=4).get_tf_dataset().options().autotune.enabled is not False
        keras_own = engine.train_and_evaluate(s, mnist)
    assert ArrayDataAdapter(x, x, batch_size=4).get_tf_dataset().options().autotune.enabled is False
    assert ours["status"] == keras_own["status"] == "ok"
    assert ours["history"] == keras_own["history"]
    assert ours["confusion"] == keras_own["confusion"]
    assert ours["metrics"] == keras_own["metrics"]


def test_a_diverging_run_is_marked_diverged_and_keeps_its_history(mnist):
    # SGD with an absurd step overflows the weights to inf within the first epoch: loss NaN.
    s = spec(optimizer=OptimizerSpec("sgd", (("learning_rate", 1e30),)), epochs=5)
    result = engine.train_and_evaluate(s, mnist)
    assert result["status"] == "diverged"
    assert "NaN or infinite at epoch 1" in result["error"]
    assert result["history"]["loss"] == [None]  # stopped after the first epoch, NaN stored as null
    assert result["metrics"]["diverged_epoch"] == 1 and result["metrics"]["epochs_run"] == 1
    assert result["confusion"] == []
    json.dumps(result, allow_nan=False)


def test_an_exception_is_a_failed_result_with_the_traceback_in_the_log(mnist):
    def broken_features(images, p, o, key):
        raise OSError("disk full")

    lines = []
    result = engine.train_and_evaluate(FAMILIES["hog-mlp"], mnist, hog_features=broken_features, log=lines.append)
    assert result["status"] == "failed"
    assert result["error"] == "OSError: disk full"
    assert any("Traceback" in line for line in lines)
    assert documented_keys() <= set(result)


def test_hog_features_are_asked_for_with_data_keyed_names(mnist):
    keys = []

    def spy(images, p, o, key):
        keys.append((key, len(images), p, o))
        from labreport.train import features
        return features.hog_batch(images, p, o)

    full = engine.prepare_inputs(FAMILIES["hog-mlp"], mnist, hog_features=spy)
    quick = engine.prepare_inputs(FAMILIES["hog-mlp"], mnist, hog_features=spy,
                                  quick_cfg=engine.QuickConfig(epochs=1, n_train=50, n_test=20))
    stem = mnist.sha256[:16]
    assert keys == [(f"{stem}-train", 300, 4, 8), (f"{stem}-test", 100, 4, 8),
                    (f"{stem}-train-q50", 50, 4, 8), (f"{stem}-test-q20", 20, 4, 8)]
    assert full.x_train.shape == (300, 392) and quick.x_test.shape == (20, 392)
    assert full.x_train.dtype == np.float32


def test_pixels_are_scaled_to_unit_float32(mnist):
    inputs = engine.prepare_inputs(FAMILIES["cnn"], mnist)
    assert inputs.x_train.shape == (300, 28, 28, 1) and inputs.x_train.dtype == np.float32
    assert inputs.x_train.max() <= 1.0 and inputs.x_train.max() == pytest.approx(mnist.x_train.max() / 255)
    assert engine.prepare_inputs(FAMILIES["raw-mlp"], mnist).x_test.shape == (100, 784)


def test_quick_mode_caps_epochs_and_subsamples(mnist):
    cfg = engine.QuickConfig(epochs=1, n_train=50, n_test=20)
    result = engine.train_and_evaluate(dataclasses.replace(FAMILIES["raw-mlp"], epochs=100), mnist,
                                       quick=True, quick_cfg=cfg)
    assert result["quick"] is True and result["status"] == "ok"
    assert result["metrics"]["epochs_run"] == 1
    assert (result["data"]["n_train"], result["data"]["n_test"]) == (50, 20)
    assert np.array(result["confusion"]).sum() == 20


# --------------------------------------------------------------------------- pure helpers


def test_subsample_is_deterministic_sorted_and_stratified():
    y = np.repeat(np.arange(10), [100, 50, 80, 120, 90, 110, 95, 105, 70, 180])
    idx = engine.subsample_indices(y, 200)
    assert len(idx) == 200 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, engine.subsample_indices(y, 200))
    share = np.bincount(y[idx], minlength=10) / 200
    assert np.allclose(share, np.bincount(y) / len(y), atol=0.01)
    assert np.array_equal(engine.subsample_indices(y, 5000), np.arange(len(y)))


def test_quick_config_from_env():
    assert engine.QuickConfig.from_env({}) == engine.QuickConfig(2, 2000, 1000)
    cfg = engine.QuickConfig.from_env({"LABREPORT_QUICK_EPOCHS": "3", "LABREPORT_QUICK_TRAIN": "500",
                                       "LABREPORT_QUICK_TEST": " 100 "})
    assert cfg == engine.QuickConfig(3, 500, 100) and cfg.tag == "quick-e3-n500-t100"
    with pytest.raises(ValueError, match="LABREPORT_QUICK_TRAIN must be a positive integer, got 'many'"):
        engine.QuickConfig.from_env({"LABREPORT_QUICK_TRAIN": "many"})


def test_several_steps_per_execution_only_for_epochs_of_many_small_steps():
    assert engine.steps_per_execution(60_000, 256) == engine.MAX_STEPS_PER_EXECUTION
    assert engine.steps_per_execution(60_000, 1024) == engine.MAX_STEPS_PER_EXECUTION  # 59 steps
    assert engine.steps_per_execution(60_000, 4096) == 1  # 15 steps: measured no gain
    assert engine.steps_per_execution(60_000, 8192) == 1  # measured slower
    assert engine.steps_per_execution(10, 4096) == 1
    assert engine.validation_batch(256) == 2048 and engine.validation_batch(16382) == 16382


# --------------------------------------------------------------------------- library start-up noise


def test_stderr_captured_takes_what_is_written_on_the_file_descriptor(capfd):
    lines: list[str] = []
    with engine.stderr_captured(lines):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n\nsecond line\n")  # as C++ writes
    os.write(2, b"after\n")
    assert lines == ["I0000 port.cc:153] oneDNN custom operations are on.", "second line"]
    assert capfd.readouterr().err == "after\n"


def test_the_banners_of_tensorflows_import_go_to_the_run_log_not_the_console(tmp_path):
    """A fresh process (TensorFlow not yet imported) trains one tiny model: its stderr stays
    empty and the log carries the start-up lines (TensorFlow prints at least its oneDNN note)."""
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from test_engine import synthetic_dataset, spec\n"
        "from labreport.train import engine\n"
        "lines = []\n"
        "r = engine.train_and_evaluate(spec(epochs=1), synthetic_dataset(), log=lines.append)\n"
        "print(json.dumps({'status': r['status'], 'log': lines}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok"
    startup = [line for line in result["log"] if line.startswith("library start-up: ")]
    assert any("oneDNN" in line or "cpu_feature_guard" in line for line in startup), result["log"][:5]
