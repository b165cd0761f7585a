"""The one formatting path of the report: every printed number is formatted here and recorded.

A :class:`Claim` says where a number is printed (the anchor of the element it is in),
what it is ("test accuracy of raw-tanh-250"), the exact printed text, and its source: a
path into the attachments (``results:NAME/metrics/test_accuracy``, ``config:NAME/epochs``)
or the formula it is derived from (``formula: ...``). The report model
(:mod:`labreport.report.model`) is built inside :func:`recording` and places itself with
:func:`at`; the prose modules only call :func:`pct`, :func:`num`, :func:`count`, ... and
may name the source of a number (``what=``, ``src=``) or of a whole block (:func:`about`).

Outside :func:`recording` the functions just format (tests, grade's table), so the
prose stays pure. verify rebuilds the model from a PDF's attachments and compares the
claims; see :mod:`labreport.grading.verify`.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from labreport.config.param_counts import fmt

DERIVED = "formula: recomputed from the attachments by rebuilding the report model"
# The generic "what" of a number formatted without one (prose); a named claim is more telling.
KINDS = frozenset({"percentage", "number", "signed difference", "difference in points", "count", "ratio",
                   "relative change", "duration", "text"})


@dataclass(frozen=True)
class Claim:
    anchor: str  # the id of the element the number is printed in (a PDF named destination)
    subject: str  # the experiment (or part, or "") the number is about
    what: str
    text: str  # exactly as printed
    source: str  # results:NAME/key/... | config:NAME/... | formula: ...
    value: float | int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Recorder:
    claims: list[Claim] = field(default_factory=list)
    anchor: str = ""
    subject: str = ""
    what: str | None = None
    source: str | None = None


_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("labreport_claims", default=None)


@contextmanager
def recording() -> Iterator[Recorder]:
    rec = Recorder()
    token = _ACTIVE.set(rec)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)


@contextmanager
def at(anchor: str, subject: str = "") -> Iterator[None]:
    """Numbers formatted inside are printed in the element ``anchor`` (about ``subject``)."""
    rec = _ACTIVE.get()
    if rec is None:
        yield
        return
    old = rec.anchor, rec.subject, rec.what, rec.source
    rec.anchor, rec.subject, rec.what, rec.source = anchor, subject, None, None
    try:
        yield
    finally:
        rec.anchor, rec.subject, rec.what, rec.source = old


@contextmanager
def about(subject: str | None = None, what: str | None = None, source: str | None = None) -> Iterator[None]:
    """Default subject/what/source for the numbers formatted inside (e.g. one sentence)."""
    rec = _ACTIVE.get()
    if rec is None:
        yield
        return
    old = rec.subject, rec.what, rec.source
    rec.subject = subject if subject is not None else rec.subject
    rec.what, rec.source = what or rec.what, source or rec.source
    try:
        yield
    finally:
        rec.subject, rec.what, rec.source = old


@contextmanager
def paused() -> Iterator[None]:
    """Format without recording (values computed once and printed elsewhere, or not at all)."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def record(text: str, kind: str, value: Any = None, what: str | None = None, src: str | None = None) -> str:
    """Record ``text`` as a claim in the active recorder (if any); return it unchanged."""
    rec = _ACTIVE.get()
    if rec is not None and text != "—":
        rec.claims.append(Claim(rec.anchor, rec.subject, what or rec.what or kind, text,
                                src or rec.source or DERIVED, value))
    return text


# --------------------------------------------------------------------------- formats
def pct(x: float | None, digits: int = 2, *, what: str | None = None, src: str | None = None) -> str:
    """0.98123 -> '98.12%'."""
    return "—" if x is None else record(f"{100 * x:.{digits}f}%", "percentage", x, what, src)


def num(x: float | None, digits: int = 4, *, what: str | None = None, src: str | None = None) -> str:
    """A loss or score: 4 decimals."""
    return "—" if x is None else record(f"{x:.{digits}f}", "number", x, what, src)


def signed(x: float, digits: int = 4, *, what: str | None = None, src: str | None = None) -> str:
    return record(f"{x:+.{digits}f}".replace("-", "−"), "signed difference", x, what, src)


def points(x: float, digits: int = 2, *, sign: bool = True, what: str | None = None, src: str | None = None) -> str:
    """A difference of accuracies in percentage points: 0.0052 -> '+0.52' ('0.52' without ``sign``)."""
    text = f"{100 * x:+.{digits}f}".replace("-", "−") if sign else f"{100 * abs(x):.{digits}f}"
    return record(text, "difference in points", x, what, src)


def count(n: int | None, *, what: str | None = None, src: str | None = None) -> str:
    """An integer with thousands separators: 196000 -> '196,000'."""
    return "—" if n is None else record(fmt(int(n)), "count", int(n), what, src)


def ratio(x: float, digits: int = 1, *, what: str | None = None, src: str | None = None) -> str:
    return record(f"{x:.{digits}f}", "ratio", x, what, src)


def share(x: float, digits: int = 1, *, what: str | None = None, src: str | None = None) -> str:
    """A fraction as a percentage with a sign when asked: 0.123 -> '12.3%'."""
    return record(f"{100 * x:.{digits}f}%", "percentage", x, what, src)


def signed_pct(x: float, digits: int = 1, *, what: str | None = None, src: str | None = None) -> str:
    """A relative change: 0.123 -> '+12.3%'."""
    return record(f"{100 * x:+.{digits}f}%", "relative change", x, what, src)


def text(s: str, *, what: str, src: str, value: Any = None) -> str:
    """A printed text holding numbers made elsewhere (layer arithmetic, a version): one claim."""
    return record(s, "text", value, what, src)


def seconds(s: float | None, *, what: str | None = None, src: str | None = None) -> str:
    if s is None:
        return "—"
    if s < 60:
        out = f"{s:.1f} s"
    else:
        m, sec = divmod(int(round(s)), 60)
        if m < 60:
            out = f"{m} min {sec:02d} s"
        else:
            h, m = divmod(m, 60)
            out = f"{h} h {m:02d} min"
    return record(out, "duration", s, what, src)


def plural(n: int, word: str, many: str | None = None, *, what: str | None = None, src: str | None = None) -> str:
    return f"{count(n, what=what, src=src)} {word if n == 1 else (many or word + 's')}"
