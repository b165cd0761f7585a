"""labreport: declare a neural-network lab in experiments.toml, run it, render the report.

The package is split by stage (see README "Architecture"); only ``engine``/``models``
import TensorFlow, and only inside functions.
"""

__version__ = "0.1.0"
