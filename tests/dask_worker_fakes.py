"""Preloaded into real ``dask worker`` processes by test_dask_cluster.py (``dask worker --preload``).

Swaps the worker's trainer (and, unless LABREPORT_FAKE_REAL_DATA=1, its data loader) for
fakes without TensorFlow, the way a test seam would, but inside a worker process the test
did not create in Python. Each fake epoch sleeps ``LABREPORT_FAKE_EPOCH_S`` seconds (default
0.2), so ``epochs`` in the TOML sets how long an experiment runs; each epoch appends a line to
``LABREPORT_FAKE_TRACE`` (if set) so a test can see that a cancelled experiment stopped.
Not a test module (no ``test_`` prefix): pytest does not collect it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE / "robustness", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import robust_helpers  # noqa: E402

from labreport.train import datasets, engine  # noqa: E402


def slow_fake_train(spec, dataset, *, log=None, on_epoch=None, **kwargs):
    """``spec.epochs`` epochs of ``LABREPORT_FAKE_EPOCH_S`` seconds each, then a well-formed ok result."""
    log = log or (lambda _line: None)
    epoch_s = float(os.environ.get("LABREPORT_FAKE_EPOCH_S", "0.2"))
    trace = os.environ.get("LABREPORT_FAKE_TRACE")
    start = time.perf_counter()
    for epoch in range(1, spec.epochs + 1):
        time.sleep(epoch_s)
        if trace:
            with open(trace, "a", encoding="utf-8") as f:
                f.write(f"{spec.name} {epoch} {os.getpid()}\n")
        info = engine.EpochInfo(epoch, spec.epochs, 1.0 / epoch, 0.5, 1.1 / epoch, 0.7, epoch_s,
                                time.perf_counter() - start)
        log(f"epoch {epoch}/{spec.epochs}")
        if on_epoch is not None:
            on_epoch(info)  # on a dask worker: raises if the driver cancelled this experiment
    return robust_helpers.ok_result(spec, dataset, **kwargs)


engine.train_and_evaluate = slow_fake_train
if os.environ.get("LABREPORT_FAKE_REAL_DATA") != "1":
    datasets.load = robust_helpers.tiny_dataset
