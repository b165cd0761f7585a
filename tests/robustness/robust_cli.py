"""The CLI in-process, as a user runs it: ``labreport.cli.main`` with captured output.

Most robustness cases need only the command's exit status and its stderr; running
``cli.main`` in this process exercises the same code path as ``python -m labreport`` (whose
``__main__`` only calls it) at a fraction of a subprocess's ~1 s. A representative share of
the cases still runs as real subprocesses (``robust_helpers.cli``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from labreport import cli
from robust_helpers import isolated_env


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


class InProcessCli:
    """``cli.main`` in ``folder`` with the isolated environment of robust_helpers (offline, no data)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
        self.folder, self.monkeypatch, self.capsys = folder, monkeypatch, capsys
        for name in list(os.environ):
            if name.startswith(("LABREPORT_", "PIP_")):
                monkeypatch.delenv(name)
        for name, value in isolated_env(folder).items():
            if name.startswith(("LABREPORT_", "PIP_", "KERAS_HOME", "PATH")):
                monkeypatch.setenv(name, value)
        monkeypatch.chdir(folder)

    def __call__(self, *args: str, **env: str) -> Outcome:
        with self.monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            self.capsys.readouterr()
            try:
                status = cli.main(list(args))
            except SystemExit as e:  # argparse's usage errors
                status = e.code if isinstance(e.code, int) else 2
            out = self.capsys.readouterr()
        assert "Traceback" not in out.err, out.err
        return Outcome(status, out.out, out.err)


@pytest.fixture
def lr(tmp_path, monkeypatch, capsys) -> InProcessCli:
    return InProcessCli(tmp_path, monkeypatch, capsys)
