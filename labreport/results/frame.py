"""The stored results as pandas tables, for a notebook and for ``labreport export``.

:func:`load_results` gives one row per run of each declared experiment (the resolved
spec, the report's own numbers, status and staleness; an experiment with ``repeats = N``
has N rows, told apart by the ``repeat`` column), :func:`load_history` one row per epoch of
one run, :func:`export` writes a table as CSV, Markdown or JSON. The numbers
are those the report prints: read through the same ``Run`` view, never recomputed.
pandas is imported here only, and this module only by the commands that need it, so
``list``/``check``/``render`` do not pay for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labreport.config.spec import ExperimentSpec, LabConfig
from labreport.results import staleness, store
from labreport.results.layout import BuildLayout

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "md", "json")


def _config(config: LabConfig | str | Path) -> LabConfig:
    if isinstance(config, LabConfig):
        return config
    from labreport.config.loader import load

    return load(config)


def _run_view(spec: ExperimentSpec, result: dict | None):
    # The report's view of a result (finite-number checks, curve facts): one source of its numbers.
    from labreport.results.run import Run

    return Run(spec, result)


def _spec_columns(spec: ExperimentSpec) -> dict[str, Any]:
    """The resolved spec, flat: one column per key (optimizer and HOG arguments spelled out)."""
    d = spec.result_dict()
    row: dict[str, Any] = {
        "dataset": d["dataset"],
        "hidden": "-".join(str(h) for h in spec.hidden),
        "activation": d["activation"],
        "dropout": d["dropout"],
        "batch_size": d["batch_size"],
        "epochs": d["epochs"],
        "optimizer": spec.optimizer.name,
        **{f"optimizer_{k}": v for k, v in spec.optimizer.as_dict().items()},
        "seed": d["seed"],
        "hog_pixels_per_cell": spec.hog.pixels_per_cell if spec.hog else None,
        "hog_orientations": spec.hog.orientations if spec.hog else None,
        "conv": " ".join(f"{c.filters}x{c.kernel}x{c.kernel}/{c.activation}/pool{c.pool}" for c in spec.conv),
    }
    return row


def _row(spec: ExperimentSpec, layout: BuildLayout) -> dict[str, Any]:
    """The row of one run (``spec`` from ``ExperimentSpec.runs()``: its repeat and seed)."""
    result = store.read_result(layout.root, spec.name, layout.quick, repeat=spec.repeat)
    run = _run_view(spec, result)
    decision = staleness.check(spec, layout)
    facts = run.facts if result else {}
    epoch_s = (result or {}).get("epoch_s")
    return {
        "run": spec.run_key,  # the index: unique per run; dropped from the columns
        "name": spec.name,
        "part": spec.part,
        "chosen": spec.chosen,
        "model": spec.summary,
        **_spec_columns(spec),
        "n_params": run.n_params,
        "status": run.status,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "macro_f1": run.macro_f1,
        "train_loss": run._metric("train_loss"),
        "train_accuracy": run._metric("train_accuracy"),
        "best_epoch": facts.get("best_epoch"),
        "epochs_run": facts.get("epochs_run"),
        "duration_s": run.duration_s,
        "epoch_s": float(epoch_s) if isinstance(epoch_s, (int, float)) else None,
        "quick": layout.quick,
        "staleness": decision.status,
        "stale_reasons": decision.why() if not decision.fresh else "",
        "error": str((result or {}).get("error") or ""),
        "repeat": spec.repeat,
        "repeats": spec.repeats,
    }


def load_results(config: LabConfig | str | Path = "experiments.toml", build: str | Path = "build", *,
                 quick: bool = False) -> pd.DataFrame:
    """One row per run of each experiment of ``config`` (a LabConfig or the path of
    experiments.toml), in its order; an experiment without ``repeats`` is one row.

    Columns: name, part, chosen, the resolved spec (dataset ... conv; ``seed`` is the run's
    own seed), n_params, status (ok / diverged / failed / not run), the report's numbers
    (test_loss, test_accuracy, macro_f1, ...), quick, staleness (fresh / missing / stale /
    failed), stale_reasons, error, then ``repeat`` (which run, 1-based) and ``repeats`` (how
    many the experiment declares). The index is the run's key: the name for repeat 1,
    ``name/repeat-R`` for the others, so ``table.loc["raw-tanh-250"]`` is repeat 1 and
    ``table.groupby("name")["test_accuracy"].agg(["mean", "std"])`` is the spread between
    seeds. Missing numbers are NaN / None. ``quick`` reads the --quick smoke-run results.
    """
    import pandas as pd

    lab = _config(config)
    layout = BuildLayout(Path(build), quick)
    table = pd.DataFrame([_row(run, layout) for spec in lab.experiments for run in spec.runs()])
    for column in ("hog_pixels_per_cell", "hog_orientations", "best_epoch", "epochs_run"):
        table[column] = table[column].astype("Int64")  # integers with gaps, not floats
    for column in ("test_loss", "test_accuracy", "macro_f1", "train_loss", "train_accuracy", "duration_s", "epoch_s"):
        table[column] = table[column].astype("float64")  # None -> NaN: a missing number, as pandas spells it
    return table.set_index("run").rename_axis(None)


def load_history(config: LabConfig | str | Path, name: str, build: str | Path = "build", *,
                 quick: bool = False, repeat: int = 1) -> pd.DataFrame:
    """The per-epoch curves of run ``repeat`` of experiment ``name``: epoch, loss, accuracy,
    val_loss, val_accuracy.

    ``val_*`` is the test set (the lab validates on it). NaN where an epoch diverged.
    Raises UnknownExperiment for a name not in the config; an experiment without a stored
    result gives an empty table.
    """
    import pandas as pd

    from labreport.errors import UnknownExperiment

    lab = _config(config)
    try:
        spec = lab.by_name(name)
    except KeyError:
        raise UnknownExperiment(f"{lab.path}: no experiment named {name!r}") from None
    runs = spec.runs()
    if not 1 <= repeat <= len(runs):
        raise UnknownExperiment(f"{lab.path}: experiment {name!r} has {len(runs)} run(s); no repeat {repeat}")
    result = store.read_result(Path(build), name, quick, repeat=repeat)
    history = _run_view(runs[repeat - 1], result).history if result else {}
    n = max((len(v) for v in history.values()), default=0)
    columns = {"epoch": list(range(1, n + 1))}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", *sorted(set(history) - {
            "loss", "accuracy", "val_loss", "val_accuracy"})):
        values = history.get(key, [])
        columns[key] = [float(v) for v in values] + [math.nan] * (n - len(values))
    return pd.DataFrame(columns).astype({"epoch": "int64"})


# The report's part table: its columns, from load_results' (numbers unformatted).
PART_COLUMNS = {"name": "Experiment", "model": "Model", "n_params": "Params", "batch_size": "Batch",
                "epochs": "Epochs", "test_loss": "Test loss", "test_accuracy": "Test acc.",
                "macro_f1": "Macro F1", "best_epoch": "Best epoch", "duration_s": "Time (s)"}


def part_table(table: pd.DataFrame, part: str) -> pd.DataFrame:
    """The rows of ``part`` in :func:`load_results`' table (repeat 1 of each experiment: one row
    per experiment), with the report's part-table columns."""
    rows = table[(table["part"] == part) & (table["repeat"] == 1)]
    return rows[list(PART_COLUMNS)].rename(columns=PART_COLUMNS).reset_index(drop=True)


# --------------------------------------------------------------------------- export
def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub pipe table (pandas' own needs the optional ``tabulate``)."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        try:
            import pandas as pd

            if pd.isna(value):
                return ""
        except (TypeError, ValueError):
            pass
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def export(table: pd.DataFrame, fmt: str) -> str:
    """``table`` as CSV, Markdown (``md``) or JSON (a list of records, nulls for missing numbers)."""
    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n")
    if fmt == "md":
        return to_markdown(table)
    if fmt == "json":
        records = json.loads(table.to_json(orient="records"))
        return json.dumps(records, indent=1) + "\n"
    raise ValueError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")


def records(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """A table from a header and rows (e.g. grade's columns()/row()), for :func:`export`."""
    import pandas as pd

    return pd.DataFrame([list(r) for r in rows], columns=list(columns))
