"""Grading a class survives hostile hand-ins (issue R, items 4 and 5), through the real CLI.

One real submission (a synthetic lab rendered to PDF) among hostile ones built here: deeply
nested JSON and TOML attachments, huge integers, a 100,000-character experiment name, a
file that is not a PDF, a decompression bomb, a page whose content stream keeps the text
extractor busy for minutes, and formula cells in the title, group and authors. Each gets
its own row saying why, the real one is graded as usual, and every output is written.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zlib
from pathlib import Path

import pytest

from robust_helpers import cli, isolated_env
from test_grade import make_pdf
from test_verify import attachment, reattach

TIMEOUT_S = 20  # per submission; the real one needs a few seconds even on a loaded machine


def busy_pdf(src: Path, dst: Path, n_pages: int = 12, ops_per_page: int = 200_000) -> Path:
    """``src`` plus pages of text operators: pypdf's extractor needs ~10 s per page here.

    Each page stays under pypdf's per-stream parsing budget; all pages share one stream,
    so the file stays small.
    """
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter(clone_from=str(src))
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf " + b"(x) Tj " * ops_per_page + b"ET\n")
    contents = writer._add_object(stream.flate_encode())
    for _ in range(n_pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = resources
        page[NameObject("/Contents")] = contents
    with open(dst, "wb") as f:
        writer.write(f)
    return dst


def bomb_pdf(src: Path, dst: Path, size: int = 200 * 2**20) -> Path:
    """``src`` whose results.json inflates to ``size`` bytes (under a megabyte on disk)."""
    from pypdf import PdfWriter
    from pypdf.generic import NameObject

    writer = PdfWriter(clone_from=str(src))
    for embedded in list(writer.attachment_list):
        if embedded.name == "results.json":
            embedded.delete()
    writer.add_attachment("results.json", b"BOMB")
    deflated = zlib.compress(b" " * size, 9)  # built here rather than by pypdf: no second copy in memory
    streams = [o for o in writer._objects if o is not None and getattr(o, "_data", None) == b"BOMB"]
    assert len(streams) == 1
    streams[0]._data = deflated
    streams[0][NameObject("/Filter")] = NameObject("/FlateDecode")
    with open(dst, "wb") as f:
        writer.write(f)
    return dst


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    good, _ = make_pdf(tmp, "g7", group="Group 7")
    subs = tmp / "subs"
    subs.mkdir()
    (subs / "a-good.pdf").write_bytes(good.read_bytes())
    toml = attachment(good, "g7.toml").decode()
    results = attachment(good, "results.json").decode()

    deep = "[" * 200_000 + "]" * 200_000
    reattach(good, subs / "deep-json.pdf", "results.json", ('{"schema": 1, "experiments": ' + deep + "}").encode())
    reattach(good, subs / "deep-toml.pdf", "g7.toml", (toml + "\nx = " + deep + "\n").encode())
    reattach(good, subs / "huge-int-json.pdf", "results.json",
             results.replace('"schema": 1', '"schema": 1' + "0" * 100_000, 1).encode())
    reattach(good, subs / "huge-int-toml.pdf", "g7.toml",
             toml.replace("epochs = 4", "epochs = 4" + "0" * 4000, 1).encode())
    long_name = "r" * 100_000
    reattach(good, subs / "long-name.pdf", "g7.toml",
             toml.replace('name = "raw-16"', f'name = "{long_name}"', 1)
             .replace('from = "raw-16"', f'from = "{long_name}"').encode())
    (subs / "not-a-pdf.pdf").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(4000))
    busy_pdf(good, subs / "busy.pdf")
    formulas = (toml.replace('title = "PW04 - Deep Neural Networks"', "title = \"=cmd|' /C calc'!A0\"")
                .replace('group = "Group 7"', 'group = "@SUM(1+1)"')
                .replace('authors = ["Ada", "Alan"]', 'authors = ["-2+3", { name = "+Eve", id = "=1" }]'))
    assert formulas != toml
    reattach(good, subs / "formulas.pdf", "g7.toml", formulas.encode())
    return {"tmp": tmp, "subs": subs}


@pytest.fixture(scope="module")
def graded(hostile):
    tmp = hostile["tmp"]
    t0 = time.monotonic()
    out = cli("grade", "subs", "-o", "out", "--timeout", str(TIMEOUT_S), "--memory", "400", "--lms", "csv",
              cwd=tmp, env=isolated_env(tmp), timeout=600)
    rows = list(csv.DictReader(io.StringIO((tmp / "out" / "grades.csv").read_text(encoding="utf-8"))))
    return {"proc": out, "rows": {Path(r["file"]).name: r for r in rows}, "order": [r["file"] for r in rows],
            "elapsed_s": time.monotonic() - t0, "out": tmp / "out"}


def test_every_file_gets_a_row_and_every_output_is_written(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [Path(f).name for f in graded["order"]] == [
        "a-good.pdf", "busy.pdf", "deep-json.pdf", "deep-toml.pdf", "formulas.pdf", "huge-int-json.pdf",
        "huge-int-toml.pdf", "long-name.pdf", "not-a-pdf.pdf"]
    assert sorted(p.name for p in graded["out"].iterdir()) == [
        "grades.csv", "grades.html", "overview-figures", "overview.html", "students.csv"]
    assert "Traceback" not in proc.stdout


def test_the_real_submission_is_graded_as_usual(graded):
    row = graded["rows"]["a-good.pdf"]
    met, of = row["requirements met"].split(" of ")
    assert (row["verification"], row["group"], met) == ("VERIFIED", "Group 7", of)  # every requirement met


# The bounded attachment reader (grading/attachments.py) refuses most of these itself with its
# own words; the isolation is the backstop for what gets past it (the busy parser here). The
# rows are checked for the fact they must state, not for the reader's exact wording.
@pytest.mark.parametrize("name, why", [
    ("busy.pdf", f"^not graded: took longer than the limit of {TIMEOUT_S} s; stopped$"),
    ("deep-json.pdf", r"results\.json.*(deep|nest|Recursion)"),
    ("deep-toml.pdf", r"g7\.toml.*(deep|nest|Recursion)"),
    ("huge-int-json.pdf", r"results\.json.*(digits|integer)"),
    ("huge-int-toml.pdf", r"g7\.toml.*(digits|epochs)"),
    ("long-name.pdf", r"(characters|long|not graded)"),
    ("not-a-pdf.pdf", "^not a PDF file$"),
])
def test_each_hostile_file_has_a_row_that_says_why(graded, name, why):
    row = graded["rows"][name]
    assert row["verification"] == "UNREADABLE"
    assert re.search(why, row["problems"], re.S), row["problems"]
    assert row["total"] == "0.00" and row["title"] == ""


def test_formula_cells_are_neutralised(graded):
    row = graded["rows"]["formulas.pdf"]
    assert (row["title"], row["group"], row["authors"], row["author ids"]) == (
        "'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3, +Eve", ", =1")
    students = (graded["out"] / "students.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(students)))
    eve = next(r for r in rows if "Eve" in r["name"])
    assert (eve["student_id"], eve["name"], eve["group"]) == ("'=1", "'+Eve", "'@SUM(1+1)")
    assert "<td>=cmd|&#x27; /C calc&#x27;!A0</td>" in (graded["out"] / "grades.html").read_text(encoding="utf-8")


def test_memory_hungry_files_are_stopped_by_a_limit(hostile, tmp_path):
    """A decompression bomb (the attachment reader caps it) and a results.json of 8 million floats,
    which needs ~300 MB once parsed: over the 200 MiB given, a MemoryError in its own process."""
    good = hostile["subs"] / "a-good.pdf"
    bomb = bomb_pdf(good, tmp_path / "bomb.pdf")
    floats = '{"schema": 1, "experiments": [], "x": [' + "0.5," * 8_000_000 + '0.5]}'
    reattach(good, tmp_path / "floats.pdf", "results.json", floats.encode())
    out = cli("grade", str(bomb), str(tmp_path / "floats.pdf"), str(good), "-o", "out", "--memory", "200",
              "--timeout", str(TIMEOUT_S * 3), cwd=tmp_path, env=isolated_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {Path(r["file"]).name: r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "grades.csv").read_text()))}
    assert rows["bomb.pdf"]["verification"] == "UNREADABLE"
    assert re.search(r"(decompress|LimitReachedError|memory)", rows["bomb.pdf"]["problems"]), rows["bomb.pdf"]
    assert rows["floats.pdf"]["problems"] == "not graded: needed more than the memory limit (200 MiB)"
    assert rows["a-good.pdf"]["verification"] == "VERIFIED", rows["a-good.pdf"]["problems"]
