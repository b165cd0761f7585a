"""The repository itself: what a clone brings, what it must not.

A committed `.venv` or `build` (for instance the symlink a worktree uses to share its
environment; `/.venv/` in .gitignore matched only directories) would make a clean clone's
`make` reuse or break on a path of another machine instead of building its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked() -> list[str]:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_environment_build_output_or_data_set_is_tracked():
    tracked = _tracked()
    assert "README.md" in tracked and "Makefile" in tracked  # the listing is the repository's
    generated = [p for p in tracked if p.split("/")[0] in (".venv", "build", "dist")
                 or p.endswith((".npz", ".gz", ".whl", ".deb"))]
    assert generated == []


def test_gitignore_ignores_the_environment_and_build_also_as_symlinks():
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.venv" in lines and "/build" in lines  # no trailing slash: a symlink is a file to git
