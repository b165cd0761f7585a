"""The wheel ships the templates: installed outside the checkout, labreport renders a report.

Builds the wheel with pip (the build backend from pyproject.toml), installs it without
dependencies into a fresh venv that sees this environment's site-packages through a .pth
line (not the editable install: .pth files of that folder are not processed), then runs
the installed ``labreport render`` on synthetic results in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from fixtures.synthetic import write_fake_data, write_results
from labreport import config

ROOT = Path(__file__).resolve().parents[1]

LAB = """\
[report]
title = "Installed from the wheel"
authors = ["Ada"]

[defaults]
optimizer = { name = "rmsprop" }
batch_size = 256
epochs = 3

[[experiment]]
name = "raw-16"
part = "raw"
hidden = 16
activation = "tanh"
chosen = true

[[experiment]]
name = "cnn-8"
part = "cnn"
conv = [{ filters = 4, kernel = 3 }]
hidden = 8
activation = "relu"
chosen = true
"""


def test_an_installed_wheel_renders_a_report_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABREPORT_DATA_DIR")}
    # Built from a copy: setuptools writes build/lib and *.egg-info next to pyproject.toml,
    # and build/ is labreport's own output folder.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("labreport", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("labreport-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("labreport/templates/") for n in names if n.startswith("labreport/templates/")}
    in_checkout = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert shipped == in_checkout

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, env=env,
                               timeout=300)
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "experiments.toml").write_text(LAB)
    write_results(config.load(work / "experiments.toml"), work / "build")
    write_fake_data(work / "build" / "data")
    where = subprocess.run([str(python), "-c", "import labreport.report.render as r; print(r.__file__);"
                            " print(r.default_templates_dir())"], cwd=work, capture_output=True, text=True, env=env)
    module, templates = where.stdout.split()
    assert module.startswith(str(venv)) and templates == str(Path(purelib) / "labreport" / "templates")

    out = subprocess.run([str(venv / "bin" / "labreport"), "render"], cwd=work, capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    html = (work / "build" / "report.html").read_text(encoding="utf-8")
    assert "Installed from the wheel" in html and 'id="q4"' in html and "raw-16" in html
    assert (work / "build" / "report.pdf").read_bytes().startswith(b"%PDF")
