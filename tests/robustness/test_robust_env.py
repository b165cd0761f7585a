"""LABREPORT_* environment variables (issue R, item 3): a bad value is one line naming the variable,
the value and what is accepted, exit 2, before anything runs; a command that does not read the
variable is not stopped by it (``list`` with a bad LABREPORT_JOBS still lists).
"""

from __future__ import annotations

import pytest
from robust_cli import lr  # noqa: F401 - the fixture
from robust_helpers import MINIMAL_TOML, cli, isolated_env, snapshot

CASES = [
    ("LABREPORT_JOBS", "two", "run", "expected an integer from 0 to 64"),
    ("LABREPORT_JOBS", "1000", "report", "expected an integer from 0 to 64, got 1,000"),
    ("LABREPORT_JOBS", "-1", "run", "expected an integer from 0 to 64, got -1"),
    ("LABREPORT_JOBS", "9" * 400, "run", "expected an integer from 0 to 64"),
    ("LABREPORT_QUICK", "maybe", "render", "expected one of 1, true, yes, on or 0, false, no, off"),
    ("LABREPORT_QUICK_EPOCHS", "0", "run", "expected an integer from 1 to 100,000, got 0"),
    ("LABREPORT_QUICK_TRAIN", "lots", "run", "expected an integer from 1 to 60,000"),
    ("LABREPORT_QUICK_TEST", "20000", "report", "expected an integer from 1 to 10,000, got 20,000"),
    ("LABREPORT_BUILD", "", "run", "expected a folder path (unset the variable for the default)"),
    ("LABREPORT_DATA_DIR", " ", "data", "expected a folder path (unset the variable for the default)"),
    ("LABREPORT_SCHEDULER", "my laptop", "run", "expected a Dask scheduler address like tcp://HOST:8786"),
    ("LABREPORT_OFFLINE", "perhaps", "data", "expected one of 1, true, yes, on or 0, false, no, off"),
    ("LABREPORT_MAX_EXPERIMENTS", "0", "validate", "expected an integer from 1 to 1,000,000, got 0"),
]


@pytest.mark.parametrize("name,value,command,expected", CASES, ids=[f"{c[0]}={c[1][:10]!r}" for c in CASES])
def test_a_bad_environment_variable_is_one_line_naming_it(lr, name, value, command, expected):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    out = lr(command, **{name: value})
    shown = value if len(value) <= 40 else value[:40] + "..."
    assert (out.status, out.stdout, out.stderr) == (
        2, "", f"labreport: environment variable {name}={shown!r}: {expected}\n")
    assert not (lr.folder / "build").exists()


def test_list_is_not_stopped_by_a_variable_it_does_not_read(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    out = lr("list", LABREPORT_JOBS="two", LABREPORT_QUICK="maybe", LABREPORT_BUILD="")
    assert out.status == 0 and "1 experiment in experiments.toml" in out.stdout and out.stderr == ""


def test_usual_spellings_of_flags_and_numbers_are_accepted(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    for quick in ("1", "true", "YES", "on", "0", "false", "no", "off", ""):
        out = lr("run", "--dry-run", LABREPORT_QUICK=quick, LABREPORT_JOBS=" 2 ", LABREPORT_OFFLINE="false")
        on = quick.lower() in ("1", "true", "yes", "on")
        assert (out.status, out.stdout) == (0, f"missing  raw-1  new: never run{' with --quick' * on}\n"
                                               f"0 up to date, 1 would be trained{' (--quick results)' * on}\n"), quick


def test_a_bad_jobs_option_is_a_usage_error(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    out = lr("run", "--jobs", "lots")
    assert out.status == 2 and out.err_lines[-1] == (
        "labreport run: error: argument -j/--jobs: expected an integer from 0 to 64, got 'lots'")


def test_through_a_real_subprocess_every_command_is_refused_the_same_way(tmp_path):
    (tmp_path / "experiments.toml").write_text(MINIMAL_TOML)
    (tmp_path / "build").mkdir()
    env = isolated_env(tmp_path, LABREPORT_JOBS="two", LABREPORT_QUICK_EPOCHS="-3")
    before = snapshot(tmp_path)
    for command in ("run", "report"):
        out = subprocess_cli(tmp_path, env, command)
        assert (out.returncode, out.stdout) == (2, "") and "Traceback" not in out.stderr
        assert out.stderr == "labreport: environment variable LABREPORT_JOBS='two': expected an integer from 0 to 64\n"
    out = subprocess_cli(tmp_path, env, "list")
    assert out.returncode == 0 and "raw-1" in out.stdout
    assert snapshot(tmp_path) == before


def subprocess_cli(folder, env, *args):
    return cli(*args, cwd=folder, env=env)


def test_a_data_dir_naming_a_file_is_refused_before_anything_runs(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    for command in ("run", "data", "report"):
        out = lr(command, LABREPORT_DATA_DIR="experiments.toml")
        assert (out.status, out.stderr) == (2, "labreport: LABREPORT_DATA_DIR=experiments.toml: is a file, not a folder\n")
    assert (lr.folder / "experiments.toml").read_text() == MINIMAL_TOML
