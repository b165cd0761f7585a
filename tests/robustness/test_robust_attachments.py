"""A hand-in's attachments are untrusted (issue R, item 4, verify side): deeply nested JSON or TOML,
huge integers, non-finite numbers, a decompression bomb, too many or too long-named files, an
impossible config. ``verify`` answers each with exit 2 and a message naming the submission and the
attachment, without a traceback; ``grade`` gives each such file its row and grades the others.

The PDFs are minimal (one blank page, pypdf attachments): every check here happens while reading
the attachments, before the PDF's text is looked at.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from robust_cli import lr  # noqa: F401 - the fixture
from robust_helpers import MINIMAL_TOML, cli, snapshot

from labreport.grading import attachments

RESULTS = {"schema": 1, "config": "experiments.toml", "experiments": []}


def results_with(value_text: str) -> bytes:
    """results.json whose "extra" key holds ``value_text`` verbatim (JSON that json.dumps would not write)."""
    return json.dumps(RESULTS).encode()[:-1] + b', "extra": ' + value_text.encode() + b"}"


def make_pdf(path: Path, files: dict[str, bytes], *, deflate: set[str] = frozenset(), twice: bool = False) -> Path:
    """A one-page PDF carrying ``files``; the names in ``deflate`` as raw FlateDecode streams
    (``twice``: deflated twice, /Filter [/FlateDecode /FlateDecode])."""
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, NameObject

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    for name, data in files.items():
        writer.add_attachment(name, b"" if name in deflate else data)
    for entry in writer.attachment_list:
        if entry.name in deflate:
            stream = entry._embedded_file
            stream._data = zlib.compress(files[entry.name], 9)
            stream[NameObject("/Filter")] = NameObject("/FlateDecode")
            if twice:
                stream._data = zlib.compress(stream._data, 9)
                stream[NameObject("/Filter")] = ArrayObject([NameObject("/FlateDecode")] * 2)
    with open(path, "wb") as f:
        writer.write(f)
    return path


def good_files(**changes: bytes) -> dict[str, bytes]:
    return {"experiments.toml": MINIMAL_TOML.encode(), "results.json": json.dumps(RESULTS).encode(), **changes}


ZEROS = b"0" * (attachments.MAX_ATTACHMENT_BYTES + 1_000_000)  # 51 MB, ~50 kB once deflated

CASES = [
    ("results.json nested 100,000 deep", good_files(**{"results.json": results_with("[" * 100_000 + "]" * 100_000)}),
     set(), "the attached results.json nests 100,001 levels deep; at most 64"),
    ("an integer of 5,000 digits", good_files(**{"results.json": results_with("9" * 5000)}), set(),
     "the attached results.json is not valid JSON (an integer of 5,000 digits; at most 30)"),
    ("an integer of 40 digits", good_files(**{"results.json": results_with("-" + "1" * 40)}), set(),
     "the attached results.json is not valid JSON (an integer of 40 digits; at most 30)"),
    ("a float beyond double range", good_files(**{"results.json": results_with("1e999")}), set(),
     "the attached results.json is not valid JSON (the number 1e999 is out of range)"),
    ("NaN", good_files(**{"results.json": results_with("NaN")}), set(),
     "the attached results.json is not valid JSON (NaN is not JSON)"),
    ("results.json that is not UTF-8", good_files(**{"results.json": b"\xff\xfe{}"}), set(),
     "the attached results.json is not UTF-8 text"),
    ("a decompression bomb", good_files(**{"results.json": ZEROS}), {"results.json"},
     "the attached results.json is larger than 50,000,000 bytes once decompressed"),
    ("a corrupt deflate stream", good_files(**{"results.json": b"{}"}), {"results.json"}, None),
    ("20 attached files", {**good_files(), **{f"f{i}.txt": b"x" for i in range(18)}}, set(),
     "more than 16 attached files; a labreport report carries 2"),
    ("an attachment named with 300 characters", {**good_files(), "n" * 300 + ".txt": b"x"}, set(),
     f"the attached {'n' * 60}... has a name of 304 characters; at most 255"),
]


@pytest.mark.parametrize("files,deflate,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify_refuses_an_attachment_over_a_limit_in_one_line(lr, files, deflate, message):
    pdf = make_pdf(lr.folder / "hand-in.pdf", files, deflate=deflate)
    if message is None:  # the corrupt stream: deflate the bytes, then cut them
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=str(pdf))
        next(e for e in writer.attachment_list if e.name == "results.json")._embedded_file._data = b"x\x9c\x00garbage"
        writer.write(str(pdf))
        message = "the attached results.json is corrupt (zlib: Error -3 while decompressing data: invalid stored block lengths)"
        assert PdfReader(str(pdf)).attachment_list  # still a readable PDF
    before = snapshot(lr.folder)
    out = lr("verify", "hand-in.pdf")
    assert (out.status, out.stdout, out.stderr) == (2, "", f"labreport: hand-in.pdf: {message}\n")
    assert snapshot(lr.folder) == before


TOML_CASES = [
    ("a TOML nested 5,000 deep", MINIMAL_TOML + "dropout = " + "[" * 5000 + "]" * 5000 + "\n",
     "experiments.toml:11: nested deeper than 32 levels of [ and {"),
    ("an experiment name of 150 characters", MINIMAL_TOML.replace('"raw-1"', '"' + "r" * 150 + '"'),
     f"experiments.toml:5: experiment '{'r' * 59}...: key 'name': '{'r' * 59}... is 150 characters long;"
     " names are at most 100 (they become file names)"),
    ("a sweep of 2,560,000 experiments", MINIMAL_TOML + '\n[[sweep]]\nfrom = "raw-1"\nvary = { ' + ", ".join(
        f"{k} = [{', '.join(str(i) for i in range(1, 41))}]" for k in ("hidden", "epochs", "seed", "batch_size"))
     + " }\n", "experiments.toml:14: sweep #1 (from 'raw-1'): key 'vary': expands to 2,560,000 experiments,"
     " 2,560,001 in all; the limit is 1,000 (set LABREPORT_MAX_EXPERIMENTS to change it)"),
    ("an integer of 5,000 digits", MINIMAL_TOML.replace("epochs = 2", "epochs = " + "9" * 5000),
     "experiments.toml:10: a number with more than 30 digits"),
    ("a billion-unit layer", MINIMAL_TOML.replace("hidden = 16", "hidden = 1000000000"),
     "experiments.toml:7: experiment 'raw-1': key 'hidden': layer sizes must be <= 1,000,000, got 1,000,000,000"),
    ("a byte-order mark", "\ufeff" + MINIMAL_TOML,
     "experiments.toml:1: the file starts with a UTF-8 byte-order mark (BOM), which TOML does not allow; save it as"
     " UTF-8 without BOM"),
]


@pytest.mark.parametrize("toml,line", [c[1:] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES])
def test_verify_refuses_an_attached_config_over_a_limit_naming_both(lr, toml, line):
    make_pdf(lr.folder / "hand-in.pdf", good_files(**{"experiments.toml": toml.encode()}))
    out = lr("verify", "hand-in.pdf")
    assert (out.status, out.stdout) == (2, "")
    assert out.err_lines == ["labreport: hand-in.pdf: the attached experiments.toml is invalid:", f"  {line}"]


def test_grade_gives_each_bad_hand_in_its_row_and_writes_the_table(lr):
    folder = lr.folder / "hand-ins"
    folder.mkdir()
    for i, (_, files, deflate, message) in enumerate(CASES[:7]):
        make_pdf(folder / f"bad-{i}.pdf", files, deflate=deflate)
    make_pdf(folder / "bad-toml.pdf", good_files(**{"experiments.toml": TOML_CASES[0][1].encode()}))
    out = lr("grade", "hand-ins", "-o", "grades")
    assert out.status == 0, out.stderr
    csv_text = (lr.folder / "grades" / "grades.csv").read_text()
    assert csv_text.count("UNREADABLE") == 8
    for i, (_, _, _, message) in enumerate(CASES[:7]):
        assert f"hand-ins/bad-{i}.pdf: " in out.stdout and message.split(" (")[0] in csv_text
    assert "nested deeper than 32 levels" in csv_text


def test_verify_through_a_real_subprocess(tmp_path):
    make_pdf(tmp_path / "deep.pdf", good_files(**{"results.json": results_with("{\"a\": " * 50_000 + "1" + "}" * 50_000)}))
    out = cli("verify", "deep.pdf", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "labreport: deep.pdf: the attached results.json nests 50,001 levels deep; at most 64\n"


def test_the_limits_leave_room_for_a_real_report():
    """The reference lab's results.json (~0.3 MB, 6 levels) is far inside every limit."""
    doc = {"schema": 1, "experiments": [{"name": f"e{i}", "result": {"metrics": {"test_accuracy": 0.98},
                                                                    "confusion": [[1000] * 10] * 10,
                                                                    "history": {"loss": [0.1] * 250}}}
                                         for i in range(24)]}
    data = json.dumps(doc, indent=1).encode()
    assert attachments.parse_json(data, "r.pdf", "results.json") == doc
    assert attachments.json_depth(data.decode()) < attachments.MAX_JSON_DEPTH // 4
    assert len(data) < attachments.MAX_ATTACHMENT_BYTES // 50


@pytest.mark.parametrize("status,problem", [
    ("banana", "'status' is \"banana\", not one of ok, diverged, failed"),
    (["ok"], "'status' is [\"ok\"], not one of ok, diverged, failed"),
    (None, "'status' is null, not one of ok, diverged, failed"),
    ("diverged", None),
])
def test_an_attached_result_with_an_unknown_status_is_malformed(status, problem):
    from labreport.grading import verify

    result = {"status": status} if status is not None else {}
    assert verify.result_problem(result) == problem


def test_a_double_deflate_bomb_is_refused_before_any_decoding(lr):
    """50 MB deflated twice is ~1 kB: pypdf would decode the whole chain in memory."""
    make_pdf(lr.folder / "hand-in.pdf", good_files(**{"results.json": ZEROS}), deflate={"results.json"}, twice=True)
    out = lr("verify", "hand-in.pdf")
    assert (out.status, out.stderr) == (2, "labreport: hand-in.pdf: the attached results.json is stored with the PDF"
                                           " filter /FlateDecode /FlateDecode; labreport reads attachments stored plain"
                                           " or with one /FlateDecode\n")
