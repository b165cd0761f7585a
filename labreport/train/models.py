"""ExperimentSpec -> Keras model and optimizer, layer for layer as ``param_counts.breakdown`` says.

Three families share one feed-forward head (Dense hidden layers, optional Dropout
after each, Dense(10, softmax)):

- ``mlp``: Input(784) on the flattened raw pixels;
- ``hog``: Input(n_features) on HOG features;
- ``cnn``: Input(28, 28, 1) -> [Conv2D -> MaxPooling2D if pool > 1]... -> Flatten.

The convolutions are Keras' Conv2D with one change of graph, not of mathematics: the bias is
added as a plain broadcast over the channels (``conv_layer``). Keras adds it reshaped to
(1, 1, 1, filters), which its TensorFlow backend turns into ``BiasAdd``; TensorFlow's oneDNN
build then fuses ``BiasAddGrad`` with the kernel's gradient into one oneDNN "backward weights
with bias" primitive, which measured 6.5x slower than the kernel's gradient alone on these
CPUs (1,146 ms against 176 ms for 8,192 images of the 64-filter Fashion model). Same weights,
same forward values; the gradients differ only in the order of float additions (the bias
gradient is a separate sum), so results differ from the fused graph's at the rounding level:
conv models have their own engine version (``engine.CONV_ENGINE_VERSION``), so their cached
results were retrained once.

Every built model is checked against the parameter arithmetic of the report
(``param_counts.breakdown``), per layer and in total, so the numbers printed in question 2
cannot drift from what Keras trains. TensorFlow/Keras are imported inside the
functions only: importing this module stays cheap.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from labreport.config import param_counts
from labreport.config.spec import IMAGE_SIDE, N_CLASSES, ExperimentSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras


def input_length(spec: ExperimentSpec) -> int:
    """Length of the input vector of an MLP spec (784 raw pixels or the HOG feature length)."""
    return spec.hog.n_features if spec.hog else IMAGE_SIDE * IMAGE_SIDE


def build(spec: ExperimentSpec, n_inputs: int | None = None, *, name: str | None = None,
          micro_batches: bool = True) -> keras.Model:
    """The (uncompiled) Keras model of ``spec``; raises RuntimeError if it disagrees with params.

    ``n_inputs`` is the feature length actually fed to an MLP (checked against the
    spec, so features computed with other settings fail here, not deep inside fit);
    ignored for CNNs, whose input is always the 28x28x1 image. ``name`` replaces the
    model's name (the experiment's): fused branches need unique names, and repeats of
    one experiment share it. The name draws no random numbers: the weights are the same.
    ``micro_batches=False`` gives Keras' own steps on whole batches even where ``micro_batch``
    would cut them (the plain-notebook baseline of ``make bench``).
    """
    import keras

    expected = input_length(spec)
    if not spec.conv and n_inputs is not None and n_inputs != expected:
        raise ValueError(f"experiment {spec.name!r}: the model expects {expected} inputs, got {n_inputs}")

    layers: list = []
    if spec.conv:
        layers.append(keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE, 1), name="image"))
        for i, conv in enumerate(spec.conv, 1):
            layers.append(conv_layer()(
                conv.filters, conv.kernel, padding=conv.padding, activation=conv.activation,
                data_format="channels_last", name=f"conv{i}",
            ))
            if conv.pool > 1:
                layers.append(keras.layers.MaxPooling2D(conv.pool, name=f"pool{i}"))
        layers.append(keras.layers.Flatten(name="flatten"))
    else:
        layers.append(keras.Input(shape=(expected,), name="hog" if spec.hog else "pixels"))
    for i, units in enumerate(spec.hidden, 1):
        layers.append(keras.layers.Dense(units, activation=spec.activation, name=f"dense{i}"))
        if spec.dropout > 0:
            layers.append(keras.layers.Dropout(spec.dropout, name=f"dropout{i}"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name="output"))

    micro = micro_batch(spec) if micro_batches else None
    model = (accumulating_sequential() if micro else keras.Sequential)(layers, name=name or spec.name.replace(".", "_"))
    if micro:
        model.micro_batch = micro
    check_params(model, spec)
    return model


# A batch is cut into micro-batches when one micro-batch's largest feature map fits in this
# many bytes (about a core's L2 cache here): 64 images for the lab's 9-filter CNNs.
MICRO_BATCH_BYTES = 2 * 2**20
# Below this many images per micro-batch the dense layers' matrix products get too thin: the
# 64-filter model (8 images would fit) measured 1.3x slower per epoch at 32 (10.6-11.0 s against
# 8.3-8.5 s, one thread, alone), so it trains on whole batches.
MIN_MICRO_BATCH = 32


def micro_batch(spec: ExperimentSpec) -> int | None:
    """Images per micro-batch for ``spec``'s training, test and prediction steps, or None for
    whole batches.

    A CNN's step on a large batch streams every feature map through memory: the first layer's
    maps of 16,382 Fashion images are 460 MB. The same step cut into micro-batches, the
    gradients summed (each micro-batch's mean loss weighted by its share of the batch) and
    applied once, is the same update up to the order of float additions. Measured (one
    thread, a process alone, TensorFlow 2.21, 2026-11-26): seconds per epoch fashion-relu-25
    (batch 16,382) 4.0 -> 3.1, cnn-relu-25 (256) 3.9 -> 3.3, fashion-conv9-100 (4,096)
    1.8 -> 1.1 of training; peak memory 2.9 -> 1.4 GB for the batch-16,382 models, 1.65 ->
    1.27 GB for fashion-conv9-100. With three workers on two cores the speed gain mostly went
    (the full default lab: 30m28s -> 30m01s of training, 3,292 -> 3,245 CPU s); with a worker
    per core (the default since) it stays. Used for conv models (not MLPs: their layers are
    matrix products, which already run at the GEMM's rate per core at these batches) whose
    largest feature map for ``MIN_MICRO_BATCH`` images fits in ``MICRO_BATCH_BYTES``, whose
    summed gradients (a float per parameter) are smaller than a micro-batch's largest maps,
    and whose batch is larger than a micro-batch; the micro-batch is the largest power of two
    that fits.
    Pure: no TensorFlow.
    """
    if not spec.conv:
        return None
    counts = param_counts.breakdown(spec)
    largest = 4 * max(layer.units for layer in counts.layers)
    micro = 1 << max(0, (MICRO_BATCH_BYTES // largest).bit_length() - 1)
    if micro < MIN_MICRO_BATCH or micro >= spec.batch_size or 4 * counts.total > micro * largest:
        return None
    return micro


@functools.cache
def accumulating_sequential() -> type:
    """keras.Sequential whose training, test and prediction steps run the batch in
    micro-batches of ``self.micro_batch`` images (see ``micro_batch``), in one graph loop.

    Training: each micro-batch's gradient of its mean loss times its share of the batch,
    summed, then one optimizer update: the whole batch's gradient. The loss tracker and the
    metrics are updated once per batch (``batch_metrics``) to the floats Keras' per-micro-batch
    updates give, so the epoch's numbers are the whole batch's. Sample weights (never used by
    the lab) fall back to Keras' steps.

    Updating them inside the loop, as first written, cost 13-15 % of the 9-filter CNNs' time
    (seconds per epoch with the test set, one thread, alone, 2026-11-26: cnn-relu-25 3.63 ->
    3.16, fashion-relu-25 3.50 -> 3.05); the numbers are the same to the bit, so no engine
    version changed and stored results stay valid."""
    import keras
    import tensorflow as tf

    def predictions(model, k):
        """An empty TensorArray for ``k`` micro-batches' predictions."""
        return tf.TensorArray(model.compute_dtype, size=k, infer_shape=False)

    def chunks(model, x):
        """(images in the batch, number of micro-batches, the i-th micro-batch of a tensor)."""
        n = tf.shape(x)[0]
        m = model.micro_batch
        return n, (n + m - 1) // m, lambda t, i: t[i * m:(i + 1) * m]

    class AccumulatingSequential(keras.Sequential):
        micro_batch = 0

        def train_step(self, data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            if sample_weight is not None:
                return super().train_step(data)
            n, k, part = chunks(self, x)
            weights = self.trainable_weights

            def body(i, total, preds, grads):
                xs, ys = part(x, i), part(y, i)
                with tf.GradientTape() as tape:
                    y_pred = self(xs, training=True)
                    loss = self.compute_loss(x=xs, y=ys, y_pred=y_pred, training=True)
                    weighted = loss * tf.cast(tf.shape(xs)[0], loss.dtype)  # its images' sum of losses
                    share = self.optimizer.scale_loss(weighted / tf.cast(n, loss.dtype))
                return (i + 1, total + weighted, preds.write(i, y_pred),
                        [a + b for a, b in zip(grads, tape.gradient(share, weights))])

            _, total, preds, grads = tf.while_loop(
                lambda i, *_: i < k, body,
                (tf.constant(0), self._loss_tracker.total.value, predictions(self, k),
                 [tf.zeros_like(w) for w in weights]))
            self.optimizer.apply_gradients(zip(grads, weights))
            return self.batch_metrics(total, n, x, y, preds)

        def test_step(self, data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            if sample_weight is not None:
                return super().test_step(data)
            n, k, part = chunks(self, x)

            def body(i, total, preds):
                xs, ys = part(x, i), part(y, i)
                y_pred = self(xs, training=False)
                loss = self.compute_loss(x=xs, y=ys, y_pred=y_pred, training=False)
                return i + 1, total + loss * tf.cast(tf.shape(xs)[0], loss.dtype), preds.write(i, y_pred)

            _, total, preds = tf.while_loop(lambda i, *_: i < k, body,
                                            (tf.constant(0), self._loss_tracker.total.value, predictions(self, k)))
            return self.batch_metrics(total, n, x, y, preds)

        def batch_metrics(self, total, n, x, y, preds):
            """The loss tracker and the compiled metrics after a batch's micro-batches, updated
            once (per micro-batch they cost 13-15 % of the step: see the class): the loss
            tracker's total carried through the loop from its value, each micro-batch's
            ``loss * count`` added in turn as its ``update_state`` would, so the epoch's
            numbers are the same floats; the metrics see the batch's concatenated predictions
            (accuracy sums 0/1 matches: exact either way)."""
            self._loss_tracker.total.assign(total)
            self._loss_tracker.count.assign_add(tf.cast(n, self._loss_tracker.count.dtype))
            self.compute_metrics(x, y, tf.ensure_shape(preds.concat(), (None, *self.output_shape[1:])))
            return self.get_metrics_result()

        def predict_step(self, data):
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            _, k, part = chunks(self, x)

            def body(i, out):
                return i + 1, out.write(i, self(part(x, i), training=False))

            _, out = tf.while_loop(lambda i, _o: i < k, body,
                                   (tf.constant(0), predictions(self, k)))
            return out.concat()

    return AccumulatingSequential


@functools.cache
def conv_layer() -> type:
    """Keras' Conv2D whose bias is a plain broadcast add (see the module docstring for why).

    Defined on first use: Keras is imported lazily. Same weights, same config, same
    parameter count as ``keras.layers.Conv2D``; only ``call`` differs, for channels-last
    2-D inputs (the only kind the lab builds)."""
    import keras

    class Conv2D(keras.layers.Conv2D):
        def call(self, inputs):
            outputs = self.convolution_op(inputs, self.kernel)
            if self.use_bias:
                outputs = outputs + self.bias  # not reshaped: keeps oneDNN's slow fused gradient away
            return self.activation(outputs) if self.activation is not None else outputs

    return Conv2D


def check_params(model: keras.Model, spec: ExperimentSpec) -> int:
    """Keras' count_params() == param_counts.breakdown(spec).total, layer by layer; returns the total."""
    expected = param_counts.breakdown(spec)
    keras_layers = [layer for layer in model.layers if layer.count_params()]
    ours = expected.trainable
    problems = []
    if len(keras_layers) != len(ours):
        problems.append(
            f"{len(keras_layers)} Keras layers have parameters, param_counts.breakdown lists {len(ours)}"
        )
    for k_layer, layer in zip(keras_layers, ours):
        if k_layer.count_params() != layer.n_params:
            problems.append(
                f"{k_layer.name}: Keras counts {param_counts.fmt(k_layer.count_params())},"
                f" param_counts.breakdown says {layer.description} = {param_counts.fmt(layer.n_params)}"
            )
    total = int(model.count_params())
    if total != expected.total:
        problems.append(f"total: Keras counts {param_counts.fmt(total)}, param_counts.breakdown says {param_counts.fmt(expected.total)}")
    if problems:
        raise RuntimeError(
            f"experiment {spec.name!r}: the Keras model and the report's parameter arithmetic"
            " disagree (models.build and param_counts.breakdown must change together): " + "; ".join(problems)
        )
    return total


def optimizer(spec: ExperimentSpec) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer from spec.optimizer (name + explicit arguments)."""
    import keras

    classes = {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    name = spec.optimizer.name
    if name not in classes:
        raise ValueError(f"experiment {spec.name!r}: unknown optimizer {name!r}; expected one of: {', '.join(classes)}")
    return classes[name](**spec.optimizer.as_dict())
