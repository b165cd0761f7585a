"""Robustness suite (issue E): bad input and faults, each with its exact outcome.

Runs without TensorFlow (except one test marked slow) and without network: the runner gets fake
trainers through its ``train=``/``load_dataset=`` seams, the data tests inject sources and
checksums, and every subprocess gets ``robust_helpers.isolated_env`` (offline, no Keras cache,
pip without an index, no apt-get on PATH). Nothing here writes outside ``tmp_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):  # robust_helpers and tests/fixtures, whatever pytest's import mode
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def figure_cache(tmp_path_factory):
    """Figures drawn by one test, reused by the next (they are named by a hash of their inputs)."""
    return tmp_path_factory.mktemp("figure-cache")
