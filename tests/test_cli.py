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


def test_model_description_without_hidden_layers():
    from labreport.cli import describe_model
    from labreport.config.loader import loads

    spec = loads('[[experiment]]\nname = "lr"\npart = "raw"\nhidden = []\nactivation = "relu"\n'
                 'batch_size = 1\nepochs = 1\n').experiments[0]
    assert describe_model(spec) == "784-10"
