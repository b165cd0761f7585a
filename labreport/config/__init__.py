"""experiments.toml -> validated, resolved specs (pure Python, no TensorFlow).

``loader`` parses and validates the TOML, ``spec`` holds the frozen value types passed to
every later stage, ``param_counts`` the per-layer parameter arithmetic of a spec's model.
"""

from labreport.config.loader import ConfigError, load, loads
from labreport.config.spec import ExperimentSpec, LabConfig

__all__ = ["ConfigError", "ExperimentSpec", "LabConfig", "load", "loads"]
