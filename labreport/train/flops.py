"""Floating-point work of training an experiment, from the report's own layer arithmetic.

One source of truth: the per-layer multiply-accumulates of ``param_counts.Breakdown.macs``
(dense weights, and conv weights times output positions). The formula, printed by
``make bench`` next to every figure derived from it:

    forward  = 2 x MACs                     FLOPs per sample
    backward ~ 2 x forward                  (gradients of the inputs and of the weights)
    epoch    = n_train x 3 x forward + n_test x forward     (the test set is evaluated every epoch)
    total    = epochs x epoch

Pooling, activations, biases, the loss and the optimizer update are not counted (each is
less than a MAC per value). Pure: no TensorFlow, no data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labreport.config import param_counts
from labreport.config.spec import ExperimentSpec

N_TRAIN = 60_000
N_TEST = 10_000
FORMULA = ("FLOPs = epochs x (n_train x 3 x 2 x MACs + n_test x 2 x MACs); MACs per sample from"
           " param_counts (dense weights + conv weights x output positions), backward ~ 2 x forward")


@dataclass(frozen=True)
class TrainingFlops:
    """The floating-point work of one experiment's training run."""

    macs_per_sample: int
    epochs: int
    n_train: int
    n_test: int

    @property
    def forward_per_sample(self) -> int:
        return 2 * self.macs_per_sample

    @property
    def per_epoch(self) -> int:
        return self.n_train * 3 * self.forward_per_sample + self.n_test * self.forward_per_sample

    @property
    def total(self) -> int:
        return self.epochs * self.per_epoch


def training_flops(spec: ExperimentSpec, *, n_train: int = N_TRAIN, n_test: int = N_TEST,
                   epochs: int | None = None) -> TrainingFlops:
    """The FLOPs of training ``spec`` (its own epochs unless ``epochs`` is given)."""
    return TrainingFlops(param_counts.breakdown(spec).macs, spec.epochs if epochs is None else epochs,
                         n_train, n_test)


def lab_flops(specs: Iterable[ExperimentSpec]) -> int:
    """Total training FLOPs of a lab: every experiment, full data, every epoch."""
    return sum(training_flops(s).total for s in specs)
