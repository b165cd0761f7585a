"""labreport: declare a neural-network lab in experiments.toml, run it, render the report.

One subpackage per stage of the pipeline (see README "Architecture"): ``config`` ->
``train`` -> ``results`` -> ``report``, and ``grading`` over handed-in reports. Only
``train`` imports TensorFlow, and only inside functions.
"""

__version__ = "0.1.0"
