"""Untrusted text and user templates in the report.

* Text from experiments.toml (title, authors, course, group, date, comments, TOML comments) and
  from results (error messages) is printed as text: no element, attribute or URL of it survives
  into report.html, whatever the payload (HTML, ``file:`` and ``http:`` URLs, CSS ``@import``,
  Jinja syntax).
* The PDF renderer reads nothing outside build/ and the template folders: an audit hook proves that
  no file outside is even opened and no socket is connected while rendering.
* A broken user template (``labreport render --templates DIR``) is exit 2 with FILE:LINE, no
  traceback, and the build folder untouched.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from robust_helpers import MINIMAL_TOML, FakeTrainer, cli, render_html, snapshot, tiny_dataset

from labreport import config
from labreport.report import render
from labreport.train import runner
from fixtures.samples import png_bytes


class Page(HTMLParser):
    """Every element with its attributes; ``text[".cls" | "<tag>" | "#id"]``: the text inside such elements."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "embed", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._open: list[tuple[str, list[str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs))
        if tag not in self.VOID:
            keys = [f".{c}" for c in attrs.get("class", "").split()] + [f"<{tag}>"] + (
                [f"#{attrs['id']}"] if "id" in attrs else [])
            self._open.append((tag, keys))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for _, keys in self._open:
            for key in keys:
                self.text[key] = self.text.get(key, "") + data

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def urls(self) -> list[str]:
        return [v for _, attrs in self.elements for k, v in attrs.items()
                if k in ("src", "href", "data", "action", "formaction", "poster", "srcset", "xlink:href")]


def assert_inert(page: Page) -> None:
    """Nothing active or fetching that our templates did not put there themselves."""
    for tag in ("script", "iframe", "object", "embed", "base", "link", "form", "textarea", "svg"):
        assert page.tags(tag) == [], f"<{tag}> in the report"
    assert len(page.tags("style")) == 1 and len(page.tags("title")) == 1
    assert not [k for _, attrs in page.elements for k in attrs if k.startswith("on")]
    assert not [m for m in page.tags("meta") if "http-equiv" in m]
    for url in page.urls():
        assert not url.lower().startswith(("file:", "javascript:", "data:", "//")), url
        assert "evil.example" not in url and "passwd" not in url, url
    for img in page.tags("img"):  # only figures the Python side wrote, relative to build/
        assert img["src"].startswith("figures/") and ".." not in img["src"], img
    style = page.text.get("<style>", "")
    assert "@import" not in style and "evil.example" not in style


# --------------------------------------------------------------------------- untrusted text

PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "img file url": '<img src="file:///etc/passwd" onerror="alert(2)">',
    "link file url": '<a href="file:///etc/passwd">passwd</a>',
    "css import": '<style>@import url("http://evil.example/x.css");</style>',
    "attribute breakout": '"><iframe src="http://evil.example/"></iframe>',
    "base and textarea": '</title></textarea><base href="http://evil.example/">',
    "jinja syntax": "{{ 7 * 7 }}{% include 'base.html.j2' %}",
}


def hostile_toml(payload: str) -> str:
    p = json.dumps(payload)  # a JSON string is a valid TOML basic string
    return f"""# {payload}
[report]
title = {p}
course = {p}
group = {p}
date = {p}
authors = [{p}, "Ada"]

[[experiment]]
name = "raw-1"
part = "raw"
hidden = 16
activation = "relu"
batch_size = 64
epochs = 2
comment = {p}

[[sweep]]
from = "raw-1"
vary = {{ hidden = [4] }}
comment = {p}
"""


class RaisingTrainer(FakeTrainer):
    """The sweep variant fails with the payload as its error message."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def __call__(self, spec, dataset, **kwargs):
        if spec.name == "raw-1-hidden4":
            raise RuntimeError(self.message)
        return super().__call__(spec, dataset, **kwargs)


# The failed variant has no epochs: its (empty) curves plot warns; see test_robust_runs' xfail on that.
@pytest.mark.filterwarnings("ignore:No artists with labels found to put in legend")
@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_untrusted_text_is_printed_as_text(tmp_path, figure_cache, payload):
    path = tmp_path / "experiments.toml"
    path.write_text(hostile_toml(payload), encoding="utf-8")
    lab = config.load(path)
    build = tmp_path / "build"
    runner.run(lab, build, train=RaisingTrainer(payload), load_dataset=tiny_dataset, progress=io.StringIO())
    html = render_html(lab, build, figure_cache).html_path.read_text(encoding="utf-8")
    page = Page(html)
    assert_inert(page)
    # Every field still says exactly what the students wrote, as text.
    assert page.text["<title>"] == payload and page.text["<h1>"] == payload
    for key in ("course", "group", "date"):
        assert page.text[f".{key}"].strip() == payload, key
    assert page.text[".authors"].strip() == f"{payload}, Ada"
    assert [m["content"] for m in page.tags("meta") if m.get("name") == "author"] == [payload, "Ada"]
    assert page.text["#exp-raw-1"].count(payload) == 1  # the comment, through Markdown
    assert f"RuntimeError: {payload}" in page.text[".failed-box"]
    assert f"# {payload}\n" in page.text[".toml"]  # the appendix prints the file, comments included
    assert "49" not in page.text["<title>"]  # data is never evaluated as a template


MARKDOWN_TRICKS = {
    "javascript link": "[x](javascript:alert(1))",
    "mixed-case javascript": "[x](JaVaScRiPt:alert(1))",
    "entity-encoded javascript": "[x](&#106;avascript:alert(1))",
    "file link": "[x](file:///etc/passwd)",
    "file autolink": "<file:///etc/passwd>",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "protocol-relative link": "[x](//evil.example/x)",
    "local path": "[x](/etc/passwd)",
    "reference link": "[x][r]\n\n[r]: file:///etc/passwd",
    "http image": "![pixel](http://evil.example/pixel.png)",
    "file image": "![passwd](file:///etc/passwd)",
    "raw html image": '<img src="x" onerror="alert(1)">',
    "raw html style": '<style>@import url("http://evil.example/x.css");</style>',
}


@pytest.mark.parametrize("comment", list(MARKDOWN_TRICKS.values()), ids=list(MARKDOWN_TRICKS))
def test_markdown_comments_cannot_link_fetch_or_inject(comment):
    page = Page(f"<style></style><title></title><div>{render.markdown_to_html(comment)}</div>")
    assert_inert(page)
    assert page.tags("img") == [] and page.tags("a") == []
    assert page.tags("style") == [{}]  # only ours


def test_markdown_comments_keep_http_links_as_links():
    page = Page(str(render.markdown_to_html("see [notes](https://example.org/n) and <http://example.org/a>")))
    assert [a["href"] for a in page.tags("a")] == ["https://example.org/n", "http://example.org/a"]


# --------------------------------------------------------------------------- the PDF reads nothing outside




class _Watch:
    """An audit hook (they cannot be removed: this one only records while ``folder`` is set)."""

    folder: str | None = None
    opened: list[str] = []
    connected: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.folder is None:
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(cls.folder):
                cls.opened.append(path)
        elif event in ("socket.connect", "urllib.Request"):
            cls.connected.append(repr(args[:2]))


sys.addaudithook(_Watch.hook)

CANARIES = ["img", "relative", "abspath", "style-attr", "css-background", "svg-image", "svg-xlink",
            "title", "comment-image"]


def test_pdf_renderer_opens_nothing_outside_build_and_templates(tmp_path, figure_cache, monkeypatch):
    from pypdf import PdfReader

    outside = tmp_path / "outside"
    outside.mkdir()
    for name in CANARIES:
        (outside / f"{name}.png").write_bytes(png_bytes(37, 23))
    (outside / "import.css").write_text("body { color: red }")
    (outside / "font.ttf").write_bytes(b"\0\1\0\0 not a font")
    (outside / "object.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    (outside / "secret.txt").write_text("secret")
    uri = {p.name: p.as_uri() for p in outside.iterdir()}

    # Hostile text in the config too: escaped, so never even requested.
    title = f'<img src="{uri["title.png"]}"><style>@import url("{uri["import.css"]}");</style>'
    text = MINIMAL_TOML.replace('title = "Lab"', f"title = {json.dumps(title)}") + \
        f'comment = {json.dumps("![c](" + uri["comment-image.png"] + ")")}\n'
    (tmp_path / "experiments.toml").write_text(text)
    lab = config.load(tmp_path / "experiments.toml")
    build = tmp_path / "build"
    runner.run(lab, build, train=FakeTrainer(), load_dataset=tiny_dataset, progress=io.StringIO())
    render_html(lab, build, figure_cache)  # figures drawn (or reused) before the watched PDF render

    tpl = tmp_path / "tpl"
    (tpl / "partials").mkdir(parents=True)
    (tpl / "escape.png").symlink_to(outside / "img.png")  # inside the template folder, pointing out
    (tpl / "inner.svg").write_text(  # inside (allowed), but it references files outside
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="40" height="40">'
        f'<image href="{uri["svg-image.png"]}" width="37" height="23"/>'
        f'<image xlink:href="{uri["svg-xlink.png"]}" width="37" height="23"/></svg>')
    defaults = render.default_templates_dir()
    (tpl / "partials" / "title_page.html.j2").write_text(
        (defaults / "partials" / "title_page.html.j2").read_text() + "\n".join([
            f'<img src="{uri["img.png"]}" alt="file url">',
            '<img src="../outside/relative.png" alt="relative escape from build/">',
            f'<img src="{outside / "abspath.png"}" alt="absolute path">',
            f'<img src="{(tpl / "escape.png").as_uri()}" alt="symlink out of the templates">',
            f'<img src="{(tpl / "inner.svg").as_uri()}" alt="svg with outside images">',
            f'<object data="{uri["object.svg"]}" type="image/svg+xml"></object>',
            f'<embed src="{uri["object.svg"]}">',
            f'<link rel="stylesheet" href="{uri["import.css"]}">',
            f'<link rel="attachment" href="{uri["secret.txt"]}">',
            f'<a rel="attachment" href="{uri["secret.txt"]}">attached?</a>',
            f'<div style="background: url({uri["style-attr.png"]})">x</div>',
            '<img src="http://127.0.0.1:9/leak.png" alt="web">',
            "",
        ]))
    (tpl / "style.css").write_text(
        f'@import url("{uri["import.css"]}");\n'
        f'@font-face {{ font-family: Canary; src: url("{uri["font.ttf"]}"); }}\n'
        + (defaults / "style.css").read_text()
        + f'\n.title-page {{ background-image: url("{uri["css-background.png"]}"); font-family: Canary, serif; }}\n')

    fetchers = []
    real = render.make_url_fetcher
    monkeypatch.setattr(render, "make_url_fetcher", lambda roots: fetchers.append(real(roots)) or fetchers[-1])
    _Watch.opened, _Watch.connected, _Watch.folder = [], [], str(outside.resolve())
    try:
        res = render.render(lab, build, templates_dir=tpl, workers=1)
    finally:
        _Watch.folder = None
    assert _Watch.opened == [] and _Watch.connected == []

    (fetcher,) = fetchers
    roots = [build.resolve(), tpl.resolve(), defaults.resolve()]
    assert fetcher.served and all(any(Path(s).is_relative_to(r) for r in roots) for s in fetcher.served)
    expected_refused = {uri[f"{n}.png"] for n in CANARIES if n not in ("title", "comment-image")} | {
        uri["import.css"], uri["font.ttf"], uri["object.svg"], uri["secret.txt"],
        (tpl / "escape.png").as_uri(), "http://127.0.0.1:9/leak.png"}
    expected_refused.discard(uri["relative.png"])
    expected_refused.add((outside / "relative.png").as_uri())
    assert set(fetcher.refused) == expected_refused
    assert {w for w in res.warnings if w.startswith("refused: ")} == {f"refused: {u}" for u in expected_refused}
    reader = PdfReader(str(res.pdf_path))
    assert (37, 23) not in {(i.image.width, i.image.height) for page in reader.pages for i in page.images}
    assert set(reader.attachments) == {"experiments.toml", "results.json", "claims.json"}


# --------------------------------------------------------------------------- broken user templates


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A project with one stored result, its figures drawn and a report rendered once."""
    project = tmp_path_factory.mktemp("rendered")
    (project / "experiments.toml").write_text(MINIMAL_TOML)
    lab = config.load(project / "experiments.toml")
    runner.run(lab, project / "build", train=FakeTrainer(), load_dataset=tiny_dataset, progress=io.StringIO())
    render_html(lab, project / "build")
    return project


@pytest.fixture
def project(rendered, tmp_path):
    shutil.copytree(rendered, tmp_path / "p", symlinks=True)
    return tmp_path / "p"


Q1 = "partials/q1.html.j2"

BROKEN = [
    ("undefined attribute", Q1, '<section id="q1">\n<p>{{ q1.sentencez }}</p>\n</section>\n', 2,
     "UndefinedError: 'labreport.report.q1.LearningAlgorithm object' has no attribute 'sentencez'"),
    ("undefined variable", Q1, '<section id="q1">\n\n<p>{{ nosuchvar }}</p>\n</section>\n', 3,
     "UndefinedError: 'nosuchvar' is undefined"),
    ("syntax error", Q1, '<section id="q1">\n{% if %}\n</section>\n', 2,
     "TemplateSyntaxError: Expected an expression, got 'end of statement block'"),
    ("unclosed block", Q1, '<section id="q1">\n{% for s in q1.sentences %}\n<p>{{ s }}</p>\n</section>\n', 3,
     "TemplateSyntaxError: Unexpected end of template. Jinja was looking for the following tags: 'endfor' or "
     "'else'. The innermost block that needs to be closed is 'for'."),
    ("unknown filter", Q1, '<section id="q1">\n<p>{{ q1 | shout }}</p>\n</section>\n', 2,
     "TemplateAssertionError: No filter named 'shout'."),
    ("missing include", Q1, '<section id="q1">\n{% include "partials/nope.html.j2" %}\n</section>\n', 2,
     "TemplateNotFound: 'partials/nope.html.j2' not found in search paths: '{tpl}', '{defaults}'"),
    ("broken entry template", "report.html.j2",
     '{% extends "base.html.j2" %}\n{% block content %}{{ super( }}{% endblock %}\n', 2,
     "TemplateSyntaxError: unexpected '}', expected ')'"),
]


def render_cli(project: Path, *extra: str):
    return cli("render", "--no-pdf", "-c", "experiments.toml", "-b", "build", *extra, cwd=project)


@pytest.mark.parametrize("name,text,line,message", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_user_template_is_exit_2_with_file_and_line(project, name, text, line, message):
    tpl = project / "tpl"
    (tpl / name).parent.mkdir(parents=True, exist_ok=True)
    (tpl / name).write_text(text)
    before = snapshot(project / "build")
    out = render_cli(project, "--templates", "tpl")
    message = message.replace("{tpl}", str(tpl.resolve())).replace("{defaults}", str(render.default_templates_dir()))
    assert (out.returncode, out.stdout, out.stderr) == (2, "", f"labreport: {tpl.resolve() / name}:{line}: {message}\n")
    assert snapshot(project / "build") == before


RUNTIME_BROKEN = [
    ("division by zero", b'<section id="q1">\n\n{{ 1 / 0 }}\n</section>\n', 3, "ZeroDivisionError: division by zero"),
    ("iterating a number", b'<section id="q1">\n{% for x in 5 %}{{ x }}{% endfor %}\n</section>\n', 2,
     "TypeError: 'int' object is not iterable"),
    ("not UTF-8", b'<section id="q1">\n\xff\xfe\n</section>\n', 2, "UnicodeDecodeError"),
]


@pytest.mark.parametrize("text,line,message", [b[1:] for b in RUNTIME_BROKEN], ids=[b[0] for b in RUNTIME_BROKEN])
def test_a_user_template_that_raises_is_exit_2_with_file_and_line(project, text, line, message):
    tpl = project / "tpl"
    (tpl / "partials").mkdir(parents=True)
    (tpl / Q1).write_bytes(text)
    out = render_cli(project, "--templates", "tpl")
    assert "Traceback" not in out.stderr
    assert out.returncode == 2
    assert out.stderr.startswith(f"labreport: {tpl.resolve() / Q1}:{line}: {message}")


def test_a_missing_templates_folder_is_a_usage_error(project):
    before = snapshot(project / "build")
    out = render_cli(project, "--templates", "no-such-folder")
    assert out.returncode == 2 and "no-such-folder" in out.stderr and "Traceback" not in out.stderr
    assert snapshot(project / "build") == before


# --------------------------------------------------------------------------- outputs that lie (issue R, item 6)
def test_a_damaged_pdf_whose_stamp_matches_is_rebuilt(project):
    """A stamp vouches for the PDF it was written with, not for whatever file now has that name."""
    first = cli("render", "-c", "experiments.toml", "-b", "build", cwd=project, timeout=180)
    assert first.returncode == 0, first.stderr
    again = cli("render", "-c", "experiments.toml", "-b", "build", cwd=project, timeout=180)
    assert again.returncode == 0 and f"unchanged {Path('build') / 'report.pdf'}" in again.stdout
    pdf = project / "build" / "report.pdf"
    good = pdf.read_bytes()
    pdf.write_bytes(good[: len(good) // 2])  # truncated: its stamp still matches the inputs
    fixed = cli("render", "-c", "experiments.toml", "-b", "build", cwd=project, timeout=180)
    assert fixed.returncode == 0, fixed.stderr
    assert f"wrote {Path('build') / 'report.pdf'}" in fixed.stdout
    assert pdf.read_bytes()[-6:].strip().endswith(b"%%EOF") and len(pdf.read_bytes()) > len(good) // 2


def test_render_without_results_warns_and_strict_exits_1(project):
    shutil.rmtree(project / "build" / "runs")
    done = render_cli(project)
    assert done.returncode == 0, done.stderr
    assert "labreport: warning: no stored results in build/runs: every experiment is printed as not run" in done.stderr
    assert "Traceback" not in done.stderr
    strict = render_cli(project, "--strict")
    assert strict.returncode == 1
    assert strict.stderr.splitlines()[-1] == "labreport: 1 warning(s) and --strict: exit 1"
    assert "Traceback" not in strict.stderr


def test_render_warnings_reach_the_terminal(project):
    """A user template that loads a file outside build/: refused, and the user is told."""
    tpl = project / "tpl" / "partials"
    tpl.mkdir(parents=True)
    q4 = (render.default_templates_dir() / "partials" / "q4.html.j2").read_text(encoding="utf-8")
    (tpl / "q4.html.j2").write_text(q4 + '<img src="file:///etc/hostname" alt="x">\n', encoding="utf-8")
    done = cli("render", "-c", "experiments.toml", "-b", "build", "--templates", "tpl", cwd=project, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "labreport: warning: refused: file:///etc/hostname" in done.stderr
    strict = cli("render", "-c", "experiments.toml", "-b", "build", "--templates", "tpl", "--strict",
                 cwd=project, timeout=180)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr


def test_a_broken_internal_link_is_a_one_line_error(project):
    tpl = project / "tpl" / "partials"
    tpl.mkdir(parents=True)
    q4 = (render.default_templates_dir() / "partials" / "q4.html.j2").read_text(encoding="utf-8")
    (tpl / "q4.html.j2").write_text(q4 + '<a href="#nowhere">x</a>\n', encoding="utf-8")
    before = snapshot(project / "build")
    done = render_cli(project, "--templates", "tpl")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "labreport: the report's internal links are broken: the link #nowhere has no target"]
    assert snapshot(project / "build") == before
