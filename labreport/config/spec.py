"""The frozen value types passed between stages: experiment specs and report metadata.

Pure Python, no third-party imports: everything downstream (params, runner, engine,
render) takes these objects, and ``config`` is the only place that builds them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

PARTS = ("raw", "hog", "cnn", "fashion")
PART_TITLES = {
    "raw": "MLP on raw pixels",
    "hog": "MLP on HOG features",
    "cnn": "CNN on MNIST",
    "fashion": "CNN on Fashion-MNIST",
}
DATASETS = ("mnist", "fashion")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "softplus", "softsign", "linear", "gelu", "swish")
OPTIMIZERS = {
    # name -> the Keras defaults of every argument we pass through.
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
}
IMAGE_SIDE = 28
N_CLASSES = 10
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}


@dataclass(frozen=True)
class HogSpec:
    """scikit-image HOG with cells_per_block=(1, 1)."""

    pixels_per_cell: int
    orientations: int

    @property
    def n_features(self) -> int:
        return (IMAGE_SIDE // self.pixels_per_cell) ** 2 * self.orientations


@dataclass(frozen=True)
class ConvSpec:
    """Conv2D(filters, kernel x kernel, padding, activation) then MaxPool(pool x pool) if pool > 1."""

    filters: int
    kernel: int
    activation: str = "relu"
    padding: str = "same"
    pool: int = 2


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    args: tuple[tuple[str, Any], ...]  # sorted (key, value); frozen so specs hash

    def as_dict(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class ExperimentSpec:
    """One fully resolved experiment (defaults merged, sweeps expanded)."""

    name: str
    part: str
    dataset: str
    hidden: tuple[int, ...]
    activation: str
    dropout: float
    batch_size: int
    epochs: int
    optimizer: OptimizerSpec
    seed: int = 1
    hog: HogSpec | None = None
    conv: tuple[ConvSpec, ...] = ()
    chosen: bool = False
    comment: str = ""
    line: int = 0  # line of the declaration in the TOML file (for messages)
    # Repeats (issue U): how many runs the experiment declares, and which run this spec is.
    # Neither is in result_dict(): repeat 1's cache key is the key of an experiment without
    # repeats, so results stored before repeats existed stay valid.
    repeats: int = 1
    repeat: int = 1

    def runs(self) -> tuple[ExperimentSpec, ...]:
        """The ``repeats`` runs of this experiment, repeat 1 first; run r trains from
        ``repeat_seed(seed, r)``, so repeat 1 is this experiment exactly as without repeats."""
        if self.repeat != 1:  # its seed is already derived: deriving again would give other runs
            raise ValueError(f"runs() of {self.run_key!r}: ask the experiment (repeat 1), not one of its runs")
        return tuple(dataclasses.replace(self, repeat=r, seed=repeat_seed(self.seed, r))
                     for r in range(1, self.repeats + 1))

    @property
    def run_key(self) -> str:
        """This run's identity in a run (progress, tasks, outcomes): ``name`` for repeat 1,
        ``name/repeat-R`` otherwise (also its folder under build/runs/)."""
        return self.name if self.repeat == 1 else f"{self.name}/repeat-{self.repeat}"

    @property
    def run_label(self) -> str:
        """How messages name this run: 'raw-tanh-300 run 2/3', or just the name without repeats."""
        return run_label(self.name, self.repeat, self.repeats)

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.dataset]

    @property
    def summary(self) -> str:
        """The model in one table cell: '784-250-10, tanh, dropout 0.5', 'HOG p4 o8: 392-200-10, sigmoid',
        'conv 9(5x5)·9(5x5)·16(3x3) → 25 → 10, relu' (what `list` and the report's tables print)."""
        drop = f", dropout {self.dropout:g}" if self.dropout else ""
        hidden = "-".join(str(h) for h in self.hidden)  # empty: straight to the outputs
        if self.conv:
            stack = "·".join(f"{c.filters}({c.kernel}x{c.kernel})" for c in self.conv)
            conv_act = {c.activation for c in self.conv}
            act = (self.activation if conv_act == {self.activation}
                   else f"conv {'/'.join(sorted(conv_act))}, dense {self.activation}")
            return " → ".join(x for x in (f"conv {stack}", hidden, str(N_CLASSES)) if x) + f", {act}{drop}"
        n_inputs = self.hog.n_features if self.hog else IMAGE_SIDE * IMAGE_SIDE
        feats = f"HOG p{self.hog.pixels_per_cell} o{self.hog.orientations}: " if self.hog else ""
        dense = "-".join(x for x in (f"{n_inputs:,}", hidden, str(N_CLASSES)) if x)
        return f"{feats}{dense}, {self.activation}{drop}"

    def result_dict(self) -> dict[str, Any]:
        """Everything that changes the trained model's numbers (not the name, comment, chosen, line)."""
        d = {
            "dataset": self.dataset,
            "hog": dataclasses.asdict(self.hog) if self.hog else None,
            "conv": [dataclasses.asdict(c) for c in self.conv],
            "hidden": list(self.hidden),
            "activation": self.activation,
            "dropout": self.dropout,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "optimizer": {"name": self.optimizer.name, **self.optimizer.as_dict()},
            "seed": self.seed,
            "loss": "categorical_crossentropy",
        }
        return d

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "part": self.part,
            "chosen": self.chosen,
            "comment": self.comment,
            "repeats": self.repeats,
            **self.result_dict(),
        }

    def cache_key(self, *, data_sha256: str = "", engine_version: str = "", quick: bool = False) -> str:
        """sha256 of the sorted JSON of everything that affects the result (dvc-style)."""
        payload = {
            "spec": self.result_dict(),
            "data": data_sha256,
            "engine": engine_version,
            "quick": quick,
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ReportMeta:
    title: str = "Neural-network lab report"
    authors: tuple[str, ...] = ()
    course: str = ""
    group: str = ""
    date: str = ""  # empty -> the render date
    # Parallel to ``authors``: each author's identifier for the LMS ("" when given as a plain
    # string). Kept apart so everything that prints ``authors`` keeps reading plain names.
    author_ids: tuple[str, ...] = ()


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of run ``repeat`` (1-based) of an experiment whose seed is ``seed``.

    Repeat 1 keeps ``seed`` (its results are those of the experiment without repeats);
    repeat r > 1 takes the first 8 bytes of sha256(f"{seed}/{r}") as a big-endian integer,
    mapped into [1, 2**31 - 1]: stable across machines and versions, different per run,
    and a new repeat never changes the seeds of the others.
    """
    if repeat == 1:
        return seed
    digest = hashlib.sha256(f"{seed}/{repeat}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1) + 1


def run_label(name: str, repeat: int, repeats: int) -> str:
    """'raw-tanh-300 run 2/3', or the name alone for an experiment without repeats."""
    return name if repeats == 1 else f"{name} run {repeat}/{repeats}"


def group_seed(group: str) -> int:
    """The default seed of a group: stable, in [1, 2**31 - 1], different for different groups.

    Two groups running the same config then train from different initial weights, so their
    curves differ unless one copied the other (grade's copy detection relies on it).
    """
    digest = hashlib.sha256(group.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1) + 1


@dataclass(frozen=True)
class Requirements:
    """What `labreport check` demands before hand-in (overridable in [requirements])."""

    min_variants_per_part: int = 3
    parts: tuple[str, ...] = PARTS
    chosen_per_part: bool = True
    no_failed: bool = True
    no_quick: bool = True


@dataclass(frozen=True)
class LabConfig:
    path: str
    report: ReportMeta
    experiments: tuple[ExperimentSpec, ...]
    requirements: Requirements = field(default_factory=Requirements)
    source_text: str = ""

    def by_name(self, name: str) -> ExperimentSpec:
        for e in self.experiments:
            if e.name == name:
                return e
        raise KeyError(name)
