"""The build folder (issue R, items 1 and 3): ``clean`` removes only what labreport created, and every
command that writes under ``-b`` refuses a file, a path through a file, an unwritable folder or a
folder labreport did not create, with one line naming the option and exit 2, before writing.

Each case snapshots the project (every byte and mtime) and checks what survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from robust_cli import lr  # noqa: F401 - the fixture
from robust_helpers import MINIMAL_TOML, cli, snapshot, temp_files

from labreport.results import store

SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


@pytest.fixture
def project(lr):
    """A student's project: sources, notes, a git folder, experiments.toml, and a build/ of an earlier run."""
    root = lr.folder
    (root / "experiments.toml").write_text(MINIMAL_TOML)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "src").mkdir()
    (root / "src" / "notebook.py").write_text("print('my own work')\n")
    (root / "data").mkdir()  # the student's own data folder: a name labreport also uses inside build/
    (root / "data" / "mine.csv").write_text("1,2\n")
    (root / "README.md").write_text("# lab\n")
    build = root / "build"
    (build / "runs" / "raw-1").mkdir(parents=True)
    (build / "runs" / "raw-1" / "result.json").write_text(json.dumps({"schema": 1, "name": "raw-1", "status": "ok"}))
    (build / "data").mkdir()
    (build / "data" / "mnist.npz").write_bytes(b"cached data")
    (build / "figures").mkdir()
    (build / "report.html").write_text("<p>report</p>\n")
    return lr


def without(snap: dict, *prefixes: str) -> dict:
    return {k: v for k, v in snap.items() if not k.startswith(prefixes)}


REFUSED_DOT = ("labreport: {opt}: not a labreport build folder (no .labreport-build marker, and it holds "
               "'.git', 'README.md', '_empty', 'build', 'experiments.toml' and 1 more{which}); {what}\n")


WHICH = ", which labreport did not create"


def test_clean_dot_deletes_nothing_and_says_why(tmp_path, project):
    before = snapshot(tmp_path)
    out = cli("clean", "--all", "-b", ".", cwd=tmp_path)  # a real subprocess, as in the bug report
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == REFUSED_DOT.format(opt="-b .", which=WHICH, what="nothing was deleted")
    assert without(snapshot(tmp_path), "_empty") == without(before, "_empty")


def test_clean_with_labreport_build_dot_names_the_variable(project):
    before = snapshot(project.folder)
    out = project("clean", "--all", LABREPORT_BUILD=".")
    assert (out.status, out.stderr) == (2, REFUSED_DOT.format(opt="LABREPORT_BUILD=.", which=WHICH, what="nothing was deleted"))
    assert snapshot(project.folder) == before


def test_clean_refuses_any_folder_labreport_did_not_create(project):
    before = snapshot(project.folder)
    out = project("clean", "--all", "-b", "src")
    assert out.status == 2 and out.stderr == ("labreport: -b src: not a labreport build folder (no .labreport-build"
                                              " marker, and it holds 'notebook.py', which labreport did not create);"
                                              " nothing was deleted\n")
    assert snapshot(project.folder) == before


@pytest.mark.parametrize("command", ["run", "render", "report", "data"])
def test_writing_commands_refuse_a_folder_labreport_did_not_create(project, command):
    before = snapshot(project.folder)
    out = project(command, "-b", ".")
    assert (out.status, out.stdout) == (2, "")
    assert out.stderr == REFUSED_DOT.format(opt="-b .", which=WHICH, what="name a new or empty folder")
    assert snapshot(project.folder) == before


def test_clean_in_a_marked_build_removes_only_labreport_names(project):
    build = project.folder / "build"
    store.mark_build(build)
    (build / "notes.txt").write_text("the student's own notes, saved in the wrong place\n")
    (build / "runs" / "raw-1" / "my-plot.png").write_bytes(b"png")  # inside an owned folder: goes with it
    out = project("clean")
    assert out.status == 0
    assert sorted(os.listdir(build)) == [".labreport-build", ".lock", "data", "notes.txt", "runs"]
    assert out.stdout.splitlines() == ["removed build/figures", "removed build/report.html"]
    out = project("clean", "--all")
    assert sorted(os.listdir(build)) == [".labreport-build", ".lock", "notes.txt"]
    assert (build / "notes.txt").read_text().startswith("the student's own notes")
    assert (project.folder / "data" / "mine.csv").read_text() == "1,2\n"  # the project's data/ is not build/'s


def test_an_old_unmarked_build_of_labreport_names_only_is_adopted(project):
    build = project.folder / "build"
    assert not (build / store.MARKER).exists()
    (build / ".report.html.123.deadbeef.tmp").write_text("half")  # a killed writer's temp file is ours too
    out = project("clean", "--all")
    assert out.status == 0 and sorted(os.listdir(build)) == [".labreport-build", ".lock"]


def test_clean_unlinks_a_symlinked_data_folder_without_touching_its_target(project, tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared-data")
    (shared / "mnist.npz").write_bytes(b"the only copy")
    build = project.folder / "build"
    shutil.rmtree(build / "data")
    (build / "data").symlink_to(shared, target_is_directory=True)
    assert project("clean", "--all").status == 0
    assert not (build / "data").exists() and (shared / "mnist.npz").read_bytes() == b"the only copy"


def test_a_new_build_folder_is_marked_and_a_dry_run_creates_nothing(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    assert lr("run", "--dry-run", "-b", "fresh").stdout == "missing  raw-1  new: never run\n0 up to date, 1 would be trained\n"
    assert not (lr.folder / "fresh").exists()
    out = lr("render", "--no-pdf", "-b", "fresh")
    assert out.status == 0, out.stderr
    assert (lr.folder / "fresh" / store.MARKER).read_text() == store.MARKER_TEXT
    assert lr("clean", "--all", "-b", "fresh").status == 0


FILE_CASES = [
    (("run",), "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
    (("render",), "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
    (("report",), "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
    (("data",), "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
    (("clean",), "-b experiments.toml: is a file, not a folder; nothing was deleted"),
    (("run", "--dry-run"), "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
    (("verify", "report.pdf", "--rerun", "1"),
     "-b experiments.toml: is a file, not a folder; name a build folder (default: build)"),
]


@pytest.mark.parametrize("command,message", FILE_CASES, ids=[" ".join(c[0]) for c in FILE_CASES])
def test_b_naming_a_regular_file_is_refused_and_the_file_kept(project, command, message):
    before = snapshot(project.folder)
    out = project(*command, "-b", "experiments.toml")
    assert (out.status, out.stdout, out.stderr) == (2, "", f"labreport: {message}\n")
    assert snapshot(project.folder) == before


@pytest.mark.parametrize("command", ["run", "render", "grade"])
def test_a_path_through_a_file_is_refused(project, command):
    before = snapshot(project.folder)
    if command == "grade":
        out = project("grade", "src", "-o", "README.md/grades")
        want = "labreport: -o README.md/grades: a part of this path is a file, not a folder\n"
    else:
        out = project(command, "-b", "README.md/build")
        want = "labreport: -b README.md/build: a part of this path is a file, not a folder\n"
    assert (out.status, out.stderr) == (2, want)
    assert snapshot(project.folder) == before


def test_grade_output_naming_a_file_is_refused(project):
    out = project("grade", "src", "-o", "README.md")
    assert (out.status, out.stderr) == (2, "labreport: README.md is a file; -o/--output names the folder for"
                                           " grades.csv and grades.html\n")
    assert (project.folder / "README.md").read_text() == "# lab\n"


@contextlib.contextmanager
def read_only(path):
    """``path`` unwritable even for root (chattr +i), else by its mode; skipped where neither works."""
    if os.geteuid() != 0:
        if not path.is_dir():  # a file's mode does not stop os.replace onto it: only chattr does
            pytest.skip("an immutable file needs root (chattr +i)")
        os.chmod(path, 0o555)
        try:
            yield
        finally:
            os.chmod(path, 0o755)
        return
    chattr = shutil.which("chattr", path=SYSTEM_PATH)
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


READ_ONLY_COMMANDS = {"run": ("run",), "render": ("render",), "report": ("report",), "clean": ("clean", "--all"),
                      "verify --rerun": ("verify", "hand-in.pdf", "--rerun", "1")}


@pytest.mark.parametrize("command", list(READ_ONLY_COMMANDS))
def test_a_read_only_build_folder_is_one_line(project, command):
    build = project.folder / "build"
    store.mark_build(build)
    before = snapshot(project.folder)
    with read_only(build):
        out = project(*READ_ONLY_COMMANDS[command])
        after = snapshot(project.folder)
    assert out.status == 2 and out.stdout == ""
    assert out.stderr in ("labreport: -b build: the folder is not writable (Operation not permitted)\n",
                          "labreport: -b build: the folder is not writable (Permission denied)\n",
                          "labreport: build/.lock: Operation not permitted; files written before are intact\n",
                          "labreport: build/.lock: Permission denied; files written before are intact\n")
    assert after == before


def test_a_file_that_cannot_be_replaced_half_way_is_one_line_and_keeps_what_was_written(project):
    """build/ itself is writable, its report.html is immutable: render fails half-way through."""
    build = project.folder / "build"
    store.mark_build(build)
    kept = (build / "report.html").read_text()
    with read_only(build / "report.html"):
        out = project("render", "--no-pdf")
    assert out.status == 2 and out.stdout == ""
    assert out.stderr in ("labreport: build/report.html: Operation not permitted; files written before are intact\n",
                          "labreport: build/report.html: Permission denied; files written before are intact\n")
    assert (build / "report.html").read_text() == kept
    assert temp_files(build) == []


def test_a_project_folder_holding_only_its_own_data_folder_is_not_adopted(lr):
    (lr.folder / "mine" / "data").mkdir(parents=True)
    (lr.folder / "mine" / "data" / "measurements.csv").write_text("1,2\n")
    out = lr("clean", "--all", "-b", "mine")
    assert out.status == 2 and "not a labreport build folder" in out.stderr
    assert (lr.folder / "mine" / "data" / "measurements.csv").exists()
    (lr.folder / "old" / "data").mkdir(parents=True)  # what an older `labreport data` left: adopted
    (lr.folder / "old" / "data" / "mnist.npz").write_bytes(b"npz")
    assert lr("clean", "--all", "-b", "old").stdout == "removed old/data\n"


def test_grade_into_a_read_only_folder_is_refused_before_grading(project):
    out_dir = project.folder / "grades"
    out_dir.mkdir()
    with read_only(out_dir):
        out = project("grade", "src", "-o", "grades")
    assert out.status == 2 and out.stdout == ""
    assert out.stderr.startswith("labreport: -o grades: the folder is not writable (")
    assert os.listdir(out_dir) == []


def test_make_clean_and_distclean_with_build_dot_delete_nothing(tmp_path):
    make = shutil.which("make", path=SYSTEM_PATH)
    if make is None:
        pytest.skip("no make")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "Makefile", root / "Makefile")
    (root / "figures").mkdir()  # the student's own figures: the old fallback rm -rf'ed BUILD/figures
    (root / "figures" / "plot.png").write_bytes(b"png")
    (root / "notes.md").write_text("mine\n")
    before = snapshot(root)
    lr_bin = Path(sys.executable).parent / "labreport"
    for target in ("clean", "distclean"):
        out = subprocess.run([make, "-s", target, "BUILD=.", f"VENV={tmp_path / 'no-venv'}", f"LR={lr_bin}"],
                             cwd=root, capture_output=True, text=True)
        assert out.returncode == 2 and "not a labreport build folder" in out.stderr, (target, out.stderr)
        assert "Traceback" not in out.stderr
    assert snapshot(root) == before


def test_a_build_made_by_grade_alone_is_adopted_by_the_next_run(lr):
    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    (lr.folder / "hand-ins").mkdir()
    assert lr("grade", "hand-ins").status == 0  # default -o build/grades
    assert sorted(os.listdir(lr.folder / "build")) == ["grades"]
    out = lr("render", "--no-pdf")
    assert out.status == 0, out.stderr
    assert (lr.folder / "build" / store.MARKER).exists()
