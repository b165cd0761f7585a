"""render.py end to end on synthetic results of the real experiments.toml (no TensorFlow).

Golden texts: tests/golden/*.txt hold the Q2 parameter arithmetic and the per-part comparison
tables, extracted from report.html as plain text. After an intended change, regenerate them
and review the diff:

    LABREPORT_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_render.py -k golden
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fixtures.synthetic import write_fake_data, write_results
from labreport import config
from labreport.report import render
from fixtures import chromium
from fixtures.samples import png_bytes

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("LABREPORT_REGEN_GOLDEN") == "1"

EVIL_COMMENT = """**Bold** words, a [safe link](https://example.org/notes) and a [bad link](javascript:alert(2)).

<script>alert(1)</script>

<b onmouseover="alert(3)">raw html</b>

![x](file:///etc/passwd) and ![remote](http://127.0.0.1:9/x.png)

[file link](file:///etc/passwd)
"""
MISSING, FAILED, DIVERGED = "raw-sigmoid-150", "hog-tanh-p7-o8", "cnn-sigmoid-25"




def _lab_with_comment(tmp: Path) -> config.LabConfig:
    """The real experiments.toml with a hostile students' comment on the chosen raw model."""
    text = (ROOT / "experiments.toml").read_text(encoding="utf-8")
    anchor = 'name = "raw-tanh-250"\n'
    assert anchor in text
    text = text.replace(anchor, anchor + f"comment = '''\n{EVIL_COMMENT}'''\n", 1)
    path = tmp / "experiments.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """All 24 experiments: one missing, one failed, one diverged; rendered to HTML + PDF."""
    tmp = tmp_path_factory.mktemp("full")
    lab = _lab_with_comment(tmp)
    build = tmp / "build"
    write_results(lab, build, skip=(MISSING,), statuses={FAILED: "failed", DIVERGED: "diverged"})
    write_fake_data(tmp / "data")
    first = render.render(lab, build, data_dir=tmp / "data")
    html = first.html_path.read_text(encoding="utf-8")
    return {"lab": lab, "build": build, "result": first, "html": html, "data": tmp / "data"}


@pytest.fixture(scope="module")
def pdf(full):
    from pypdf import PdfReader

    reader = PdfReader(str(full["result"].pdf_path))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return reader, text


# --------------------------------------------------------------------------- golden texts
class GoldenText(HTMLParser):
    """Plain text of every element with a data-golden attribute: one line per row/item/paragraph."""

    BLOCKS = {"p", "li", "tr", "h3", "h4", "caption", "table", "ul", "ol", "section", "thead", "tbody", "tfoot"}

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.key: str | None = None
        self.depth = 0
        self.line: list[str] = []

    def flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.line)).strip(" |")
        if self.key and text:
            self.sections[self.key].append(text)
        self.line = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.key is None and "data-golden" in attrs:
            self.key, self.depth = attrs["data-golden"], 0
            self.sections[self.key] = []
        if self.key is None:
            return
        self.depth += 1
        if tag in self.BLOCKS:
            self.flush()
        elif tag in ("td", "th") and self.line:
            self.line.append(" | ")

    def handle_endtag(self, tag):
        if self.key is None:
            return
        if tag in self.BLOCKS:
            self.flush()
        self.depth -= 1
        if self.depth == 0:
            self.flush()
            self.key = None

    def handle_data(self, data):
        if self.key is not None:
            self.line.append(data)


def golden_sections(html: str) -> dict[str, list[str]]:
    parser = GoldenText()
    parser.feed(html)
    return parser.sections


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run LABREPORT_REGEN_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; regenerate if intended (see module doc)"


def _join(sections: dict[str, list[str]], prefix: str) -> str:
    out = []
    for key, lines in sections.items():
        if key.startswith(prefix):
            out.append(f"## {key}")
            out.extend(lines)
            out.append("")
    return "\n".join(out)


def test_golden_q2_parameter_arithmetic(full):
    sections = golden_sections(full["html"])
    text = _join(sections, "q2-")
    assert "784 x 250 = 196,000 weights; 250 biases" in text
    assert "(5 x 5 x 1 + 1) x 9 = 234" in text
    assert "= 198,760 trainable parameters" in text
    _check_golden("q2_arithmetic.txt", text)


def test_golden_part_tables(full):
    text = _join(golden_sections(full["html"]), "table-")
    assert set(re.findall(r"## table-(\w+)", text)) == {"raw", "hog", "cnn", "fashion"}
    _check_golden("part_tables.txt", text)


# --------------------------------------------------------------------------- the report
def test_report_answers_the_four_questions(full):
    html = full["html"]
    for q in ("q1", "q2", "q3", "q4"):
        assert f'id="{q}"' in html
    assert "RMSprop" in html and "learning_rate = 0.001" in html
    assert "cross-entropy" in html
    # Q3: a worked example from the numbers (chosen raw MLP vs chosen CNN).
    assert re.search(r"Worked example: the chosen raw-pixel MLP raw-tanh-250 has 196,250 \+ 2,510 = 198,760", html)
    # Every figure the HTML references exists, under build/figures.
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) > 50
    for src in srcs:
        assert src.startswith("figures/") and (full["build"] / src).is_file(), src


def test_pdf_pages_text_metadata_and_attachments(full, pdf):
    reader, text = pdf
    assert len(reader.pages) >= 20
    for needle in ("198,760", "7,465", "RMSprop", "Contents", "page 2 of"):
        assert needle in text, needle
    assert reader.metadata.title == full["lab"].report.title
    assert "Student A" in (reader.metadata.author or "")
    attachments = reader.attachments
    assert set(attachments) == {"experiments.toml", "results.json", "claims.json"}
    assert attachments["experiments.toml"][0].decode() == full["lab"].source_text
    results = json.loads(attachments["results.json"][0])
    assert [e["name"] for e in results["experiments"]] == [s.name for s in full["lab"].experiments]
    outline_titles = [item.title for item in reader.outline if not isinstance(item, list)]
    assert any(t.startswith("1 Learning algorithm") for t in outline_titles)


def test_toc_has_page_numbers(pdf):
    _, text = pdf
    toc = text[text.index("Contents"):][:3000]
    assert re.search(r"1 Learning algorithm \(question 1\)\s*\.*\s*\d+", toc)


def test_missing_failed_and_diverged_are_marked(full):
    html = full["html"]
    card = html[html.index(f'id="exp-{MISSING}"'):][:3000]
    assert "NOT RUN" in card and "Not run yet" in card
    assert re.search(rf"{MISSING}</a>.*?not run</td>", html, re.S)
    failed = html[html.index(f'id="exp-{FAILED}"'):][:3000]
    assert "FAILED" in failed and "synthetic failure" in failed
    diverged = html[html.index(f'id="exp-{DIVERGED}"'):][:4000]
    assert "DIVERGED" in diverged and "NaN" in diverged
    appendix = html[html.index('id="appendix-problems"'):][:3000]
    for name in (MISSING, FAILED, DIVERGED):
        assert name in appendix


def test_comment_markdown_is_neutralised(full):
    html = full["html"]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b onmouseover" not in html and "&lt;b onmouseover" in html
    assert "<strong>Bold</strong>" in html
    assert '<a href="https://example.org/notes">safe link</a>' in html
    assert 'href="javascript:' not in html and 'href="file:' not in html
    assert "etc/passwd" not in re.sub(r"\s+", " ", " ".join(re.findall(r'src="([^"]*)"', html)))
    assert "[image not shown: remote]" in html  # an http image is never an <img>


def test_results_json_is_aggregated_and_stable(full):
    path = full["build"] / "results.json"
    doc = json.loads(path.read_text())
    assert doc["experiments_toml"] == full["lab"].source_text
    statuses = {e["name"]: e["status"] for e in doc["experiments"]}
    assert statuses[MISSING] == "not run" and statuses[FAILED] == "failed" and statuses[DIVERGED] == "diverged"


def test_cached_rerender_draws_nothing_and_reuses_the_pdf(full):
    before = (full["build"] / "results.json").read_bytes()
    again = render.render(full["lab"], full["build"], data_dir=full["data"])
    assert again.figures_drawn == 0 and again.pdf_cached
    assert again.n_pages == full["result"].n_pages
    assert (full["build"] / "results.json").read_bytes() == before
    assert again.html_path.read_text(encoding="utf-8") == full["html"]


def test_no_tensorflow_after_a_render(full, tmp_path):
    code = (
        "import sys; from pathlib import Path; from labreport import config; from labreport.report import render; "
        f"lab = config.load({str(full['lab'].path)!r}); "
        f"render.render(lab, Path({str(full['build'])!r}), pdf=False); "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- small configs
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    full_lab = config.load(ROOT / "experiments.toml")
    names = ("raw-tanh-250", "raw-sigmoid-250", "cnn-relu-5")
    lab = dataclasses.replace(full_lab, experiments=tuple(full_lab.by_name(n) for n in names))
    return tmp, lab


def test_quick_banner_on_every_page(small):
    from pypdf import PdfReader

    tmp, lab = small
    build = tmp / "quick-build"
    write_results(lab, build, quick=True)
    res = render.render(lab, build, quick=True)
    reader = PdfReader(str(res.pdf_path))
    assert len(reader.pages) >= 5
    for i, page in enumerate(reader.pages, 1):
        assert render.BANNER in (page.extract_text() or ""), f"page {i} has no smoke-run banner"
    # Without --quick the same build has no (full) results: every experiment is "not run".
    full_render = render.render(lab, build, pdf=False)
    html = full_render.html_path.read_text(encoding="utf-8")
    assert render.BANNER not in html
    assert html.count('class="badge notrun"') == len(lab.experiments)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        _Recorder.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_user_template_cannot_read_outside_build_or_reach_the_web(small):
    from pypdf import PdfReader

    tmp, lab = small
    build = tmp / "canary-build"
    write_results(lab, build)
    canary = tmp / "canary.png"  # outside build/ and outside the templates
    canary.write_bytes(png_bytes(37, 23))
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    user = tmp / "user-templates" / "partials"
    user.mkdir(parents=True)
    default_title = (render.default_templates_dir() / "partials" / "title_page.html.j2").read_text()
    (user / "title_page.html.j2").write_text(
        default_title
        + f'<img src="{canary.as_uri()}" alt="canary">\n'
        + f'<img src="http://127.0.0.1:{port}/leak.png" alt="web">\n'
        + '<img src="../canary.png" alt="relative escape">\n'
        + '<link rel="attachment" href="file:///etc/passwd">\n'
    )
    try:
        res = render.render(lab, build, templates_dir=user.parent)
    finally:
        server.shutdown()
    assert _Recorder.hits == []
    refused = "\n".join(res.warnings)
    assert canary.as_uri() in refused and f"http://127.0.0.1:{port}/leak.png" in refused
    assert "file:///etc/passwd" in refused
    reader = PdfReader(str(res.pdf_path))
    sizes = {(img.image.width, img.image.height) for page in reader.pages for img in page.images}
    assert (37, 23) not in sizes
    assert set(reader.attachments) == {"experiments.toml", "results.json", "claims.json"}


def test_url_fetcher_unit(tmp_path):
    build = tmp_path / "build"
    (build / "figures").mkdir(parents=True)
    inside = build / "figures" / "ok.png"
    inside.write_bytes(png_bytes(2, 2))
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (build / "link.txt").symlink_to(outside)
    fetcher = render.make_url_fetcher([build])
    assert fetcher.fetch(inside.as_uri()).read() == inside.read_bytes()
    refused = [
        "file:///etc/passwd",
        outside.as_uri(),
        (build / "link.txt").as_uri(),  # a symlink out of build/
        f"file://{build}/../secret.txt",
        "http://127.0.0.1:9/x.png",
        "https://example.org/x.png",
        "ftp://example.org/x",
        f"file://otherhost{inside}",
    ]
    for url in refused:
        with pytest.raises(render.URLRefused):
            fetcher.fetch(url)
    assert fetcher.refused == refused
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"


def test_template_typo_names_file_and_line(small, tmp_path):
    _, lab = small
    build = tmp_path / "build"
    write_results(lab, build)
    user = tmp_path / "tpl"
    (user / "partials").mkdir(parents=True)
    (user / "partials" / "q1.html.j2").write_text('<section id="q1">\n<h2>1</h2>\n<p>{{ q1.sentencez }}</p>\n</section>\n')
    with pytest.raises(render.TemplateError) as err:
        render.render(lab, build, templates_dir=user, pdf=False)
    message = str(err.value)
    assert f"{user / 'partials' / 'q1.html.j2'}:3:" in message and "sentencez" in message

    (user / "partials" / "q1.html.j2").write_text('<section id="q1">\n{% if %}\n</section>\n')
    with pytest.raises(render.TemplateError) as err:
        render.render(lab, build, templates_dir=user, pdf=False)
    assert f"{user / 'partials' / 'q1.html.j2'}:2:" in str(err.value)


def test_default_templates_are_found():
    found = render.default_templates_dir()
    assert (found / "report.html.j2").is_file() and (found / "style.css").is_file()
    assert found == ROOT / "templates"


def test_markdown_rules():
    html = str(render.markdown_to_html("[a](HTTPS://x.org) [b](mailto:a@b.c) [c](/etc/passwd) ![i](https://x.org/i.png)"))
    assert 'href="HTTPS://x.org"' in html
    assert html.count("href=") == 1 and 'href="mailto' not in html
    assert 'href="/etc/passwd"' not in html and "<img" not in html
    assert str(render.markdown_to_html("   ")) == ""


# --------------------------------------------------------------------------- a real browser
@pytest.mark.skipif(chromium.CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_html_has_no_broken_images_in_chromium(full):
    html = full["html"]
    body = chromium.probe(full["build"] / "report.html", html, chromium.PROBE)
    n_images = re.search(r'data-images="(\d+)"', body)
    assert n_images, f"probe did not run: {body}"
    assert int(n_images.group(1)) == len(re.findall(r"<img ", html))
    broken = re.search(r'data-broken="([^"]*)"', body).group(1)
    assert broken == "", f"broken images: {broken}"


def test_a_malformed_result_does_not_sink_the_report(small, tmp_path):
    _, lab = small
    build = tmp_path / "build"
    results = write_results(lab, build)
    bad = results["raw-sigmoid-250"]
    bad["per_class"] = [{"oops": 1}]
    bad["history"]["val_loss"] = "not a list"
    from labreport.results import store

    store.write_result(build, bad)
    res = render.render(lab, build, pdf=False)
    html = res.html_path.read_text(encoding="utf-8")
    assert "could not be analysed" in html and any("raw-sigmoid-250" in w for w in res.warnings)
    assert 'id="exp-raw-tanh-250"' in html
