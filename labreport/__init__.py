"""labreport: declare a neural-network lab in experiments.toml, run it, render the report.

One subpackage per stage of the pipeline (see README "Architecture"): ``config`` ->
``train`` -> ``results`` -> ``report``, and ``grading`` over handed-in reports. Only
``train`` imports TensorFlow, and only inside functions.

In a notebook: ``labreport.load_results("experiments.toml")`` is a pandas DataFrame with
one row per run (one per experiment, or ``repeats`` of them, told apart by the ``repeat``
column), ``labreport.load_history("experiments.toml", name, repeat=1)`` a run's curves.
They are imported on first use, so ``import labreport`` loads neither pandas nor TensorFlow.
"""

__version__ = "0.1.0"
__all__ = ["load_history", "load_results"]


def __getattr__(name: str):
    if name in __all__:
        from labreport.results import frame

        return getattr(frame, name)
    raise AttributeError(f"module 'labreport' has no attribute {name!r}")
