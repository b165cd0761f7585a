"""The command line as a user runs it: output, exit status, no traceback, no TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_list_params_prints_every_experiment_with_its_count():
    out = run("list", "--params")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line and not line.startswith("name")}
    assert lines["raw-tanh-250"].endswith("198,760")
    assert lines["cnn-relu-25"].endswith("7,465")
    assert lines["fashion-conv9-100"].endswith("177,600")
    assert lines["fashion-conv64-100"].endswith("1,256,150")
    assert "24 experiments in experiments.toml" in out.stdout


def test_bad_config_exits_2_with_one_line_per_error_and_touches_nothing(tmp_path):
    (tmp_path / "experiments.toml").write_text('[[experiment]]\nname = "a"\npart = "raw"\nepoch = 3\n')
    build = tmp_path / "build"
    out = run("run", "-b", str(build), cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "experiments.toml:1: experiment 'a': missing required keys 'hidden', 'activation', 'batch_size', 'epochs'",
        "experiments.toml:4: experiment 'a': unknown key 'epoch' (did you mean 'epochs'?)",
        "2 errors in experiments.toml; nothing was run or written.",
    ]
    assert not build.exists()


def test_unknown_experiment_name_is_a_usage_error(tmp_path):
    out = run("run", "--dry-run", "raw-tanh-25O", "-b", str(tmp_path / "b"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no experiment named 'raw-tanh-25O' in experiments.toml (did you mean 'raw-tanh-250'?)" in out.stderr


@pytest.mark.parametrize("modules", [
    "labreport.cli, labreport.config.loader, labreport.config.param_counts, labreport.results.store, labreport.results.metrics",
])
def test_cli_path_does_not_import_tensorflow(modules):
    code = f"import sys, {modules}; bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; " \
           "print(bad); sys.exit(1 if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_list_does_not_import_tensorflow():
    code = ("import sys, runpy; sys.argv=['labreport','list','--params']\n"
            "from labreport import cli\n"
            "cli.main(['list', '--params'])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_list_output_piped_into_head_is_not_an_error():
    proc = subprocess.run(f"{sys.executable} -m labreport list --layers | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("name")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_model_summary_without_hidden_layers():
    from labreport.config.loader import loads

    lab = loads('[[experiment]]\nname = "lr"\npart = "raw"\nhidden = []\nactivation = "relu"\n'
                'batch_size = 1\nepochs = 1\n'
                '[[experiment]]\nname = "c"\nfrom = "lr"\npart = "cnn"\nconv = [{ filters = 4, kernel = 3 }]\n')
    assert [s.summary for s in lab.experiments] == ["784-10, relu", "conv 4(3x3) → 10, relu"]


def test_list_prints_the_model_summary_of_the_report_tables():
    out = run("list")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line and not line.startswith("name")}
    assert "784-250-10, tanh, dropout 0.5" in lines["raw-tanh-250"]
    assert "HOG p4 o8: 392-200-10, sigmoid, dropout 0.5" in lines["hog-sigmoid-p4-o8"]
    assert "conv 9(5x5)·9(5x5)·16(3x3) → 25 → 10, relu" in lines["cnn-relu-25"]


def test_user_errors_carry_their_exit_status():
    from labreport import errors

    assert {cls.__name__: cls.exit_status for cls in (
        errors.ConfigError, errors.DataError, errors.BuildLocked, errors.UnknownExperiment,
        errors.TemplateError, errors.RenderError)} == {
        "ConfigError": 2, "DataError": 2, "BuildLocked": 3, "UnknownExperiment": 2,
        "TemplateError": 2, "RenderError": 2}
    assert all(issubclass(cls, errors.UserError) for cls in (
        errors.ConfigError, errors.DataError, errors.BuildLocked, errors.UnknownExperiment,
        errors.TemplateError, errors.RenderError))


def test_a_locked_build_exits_3_without_a_traceback(tmp_path):
    from labreport.results import store

    build = tmp_path / "build"
    (build / "figures").mkdir(parents=True)
    with store.BuildLock(build):
        out = run("clean", "-b", str(build), cwd=tmp_path)
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"labreport: {build}/ is in use by another labreport process (pid {os.getpid()});" \
                                 " wait for it to finish or stop it"
    assert (build / "figures").is_dir()


@pytest.mark.parametrize("command", ["list", "validate", "data", "run", "status", "render", "report", "check",
                                     "export", "clean", "verify", "grade"])
def test_every_flag_of_every_command_is_documented(command):
    from labreport import cli

    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    undocumented = [a.option_strings or a.dest for a in sub._actions if not a.help]
    assert undocumented == []
    if command == "report":  # run's training flags and render's flags, from the shared groups
        flags = {s for a in sub._actions for s in a.option_strings}
        assert flags >= {"-c", "-b", "--quick", "--jobs", "--scheduler", "--no-pdf", "--templates"}


def test_data_reads_labreport_data_dir_like_run_and_render(tmp_path):
    data_dir = ROOT / "build" / "data"
    if not (data_dir / "mnist.npz").exists() or not (data_dir / "fashion.npz").exists():
        pytest.skip("no cached data in build/data (make data)")
    out = run("data", "-b", str(tmp_path / "build"), cwd=tmp_path, env={"LABREPORT_DATA_DIR": str(data_dir)})
    assert out.returncode == 0, out.stderr
    assert [line.split(" (")[0] for line in out.stdout.splitlines()] == [
        f"{name}: 60,000 train + 10,000 test images, verified, from cache" for name in ("mnist", "fashion")]
    assert f"cache {data_dir}/mnist.npz" in out.stderr and not (tmp_path / "build").exists()
