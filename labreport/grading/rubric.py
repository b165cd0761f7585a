"""The teacher's rubric: points per requirement and question, penalties, and each grade's arithmetic.

Read from a ``[grading]`` table (the teacher's experiments.toml or a separate file passed
with ``grade --rubric``); without one, ``DEFAULT`` is used (the lab's, out of 20). Scoring
is pure: it reads a ``grade.Grade`` (duck-typed: no import cycle) and the list of
submissions it was flagged as a copy of, and returns one ``Line`` per rubric line -- the
points and how they were reached -- and the total. Penalties for verify's findings are
keyed by the finding's kind, so a new kind of finding is graded by adding one key.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from labreport.config.spec import PARTS
from labreport.errors import UserError

QUESTIONS = ("q1", "q2", "q3", "q4")
# Points earned when met; "variants" and "chosen" are per part.
POINT_KEYS = {
    "variants": "at least min_variants trained variants (per part)",
    "chosen": "a chosen model (per part)",
    "q1": "question 1 answered", "q2": "question 2 answered", "q3": "question 3 answered",
    "q4": "question 4 answered",
    "verified": "every printed number verified",
    "parameters": "every parameter count correct",
}
# Subtracted per occurrence ("quick" and "copy" once).
PENALTY_KEYS = {
    "failed": "per failed or diverged experiment",
    "stale": "per experiment not trained with its current settings",
    "quick": "smoke runs (--quick) handed in",
    "mismatch": "per verification mismatch",
    "copy": "flagged as a copy of another submission",
}
TOP_KEYS = ("out_of", "min_variants", "parts", "points", "penalties")


class RubricError(UserError):
    """A malformed rubric: the message names the file and the key (exit 2)."""


@dataclass(frozen=True)
class Rubric:
    points: tuple[tuple[str, float], ...]
    penalties: tuple[tuple[str, float], ...]
    findings: tuple[tuple[str, float], ...]  # verify finding kind -> penalty per finding
    out_of: float | None = None  # scale the total to this; None: the sum of the points
    min_variants: int = 3
    parts: tuple[str, ...] = PARTS
    source: str = "the default rubric"

    @property
    def max_points(self) -> float:
        per_part = {"variants", "chosen"}
        return sum(v * (len(self.parts) if k in per_part else 1) for k, v in self.points)

    def line_keys(self) -> list[tuple[str, str]]:
        """(key, column label) of every line, in order: points, then penalties."""
        out = []
        for key, value in self.points:
            if key in ("variants", "chosen"):
                out += [(f"{key} {p}", f"{key} {p} (/{_n(value)})") for p in self.parts]
            else:
                out.append((key, f"{key} (/{_n(value)})"))
        out += [(f"penalty {k}", f"penalty {k} (-{_n(v)})") for k, v in self.penalties]
        out += [(f"penalty finding {k}", f"penalty finding {k} (-{_n(v)})") for k, v in self.findings]
        return out


DEFAULT = Rubric(
    points=(("variants", 2.0), ("chosen", 0.5), ("q1", 1.0), ("q2", 2.0), ("q3", 1.0), ("q4", 2.0),
            ("verified", 4.0)),
    penalties=(("failed", 0.5), ("stale", 0.5), ("quick", 5.0), ("mismatch", 1.0), ("copy", 20.0)),
    findings=(),
    out_of=20.0,
)


def _n(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- reading
def load(path: Path | str) -> Rubric:
    """The ``[grading]`` table of ``path``; RubricError (file + key) if it is missing or wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RubricError(f"{path}: no such rubric file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RubricError(f"{path}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise RubricError(f"{path}: TOML syntax error: {e}") from None
    if "grading" not in data:
        raise RubricError(f"{path}: no [grading] table (see README: Grading a class)")
    return from_table(data["grading"], str(path))


def from_table(table: Any, source: str) -> Rubric:
    errors: list[str] = []

    def err(where: str, msg: str) -> None:
        errors.append(f"{source}: [{where}]: {msg}")

    if not isinstance(table, dict):
        raise RubricError(f"{source}: 'grading' must be a table: write [grading]")
    for key in table:
        if key not in TOP_KEYS:
            err("grading", f"unknown key {key!r}" + _suggest(key, TOP_KEYS))
    out_of = table.get("out_of")
    if out_of is not None and not (_number(out_of) and out_of > 0):
        err("grading", f"key 'out_of': expected a positive number, got {out_of!r}")
        out_of = None
    min_variants = table.get("min_variants", 3)
    if not (isinstance(min_variants, int) and not isinstance(min_variants, bool) and 0 <= min_variants <= 1000):
        err("grading", f"key 'min_variants': expected an integer from 0 to 1000, got {min_variants!r}")
        min_variants = 3
    parts = table.get("parts", list(PARTS))
    if not (isinstance(parts, list) and parts and all(p in PARTS for p in parts)):
        err("grading", f"key 'parts': expected an array of parts among: {', '.join(PARTS)}")
        parts = list(PARTS)
    points = _amounts(table.get("points", {}), "grading.points", POINT_KEYS, err)
    raw_penalties = table.get("penalties", {})
    findings: list[tuple[str, float]] = []
    if isinstance(raw_penalties, dict) and "findings" in raw_penalties:
        raw_penalties = dict(raw_penalties)
        kinds = raw_penalties.pop("findings")
        if not isinstance(kinds, dict):
            err("grading.penalties", "key 'findings': expected a table { KIND = points, ... }")
        else:
            findings = _amounts(kinds, "grading.penalties.findings", None, err)
    penalties = _amounts(raw_penalties, "grading.penalties", PENALTY_KEYS, err)
    if not points and not table.get("points"):
        err("grading.points", "no points: give at least one of " + ", ".join(POINT_KEYS))
    if errors:
        raise RubricError("\n".join(errors))
    return Rubric(tuple(points), tuple(penalties), tuple(findings), float(out_of) if out_of else None,
                  min_variants, tuple(parts), source)


def _amounts(table: Any, where: str, known: dict | None, err) -> list[tuple[str, float]]:
    if not isinstance(table, dict):
        err(where, f"expected a table of KEY = points, got {type(table).__name__}")
        return []
    out = []
    for key, value in table.items():
        if known is not None and key not in known:
            err(where, f"unknown key {key!r}" + _suggest(key, known) + f" (known: {', '.join(known)})")
        elif not (_number(value) and 0 <= value <= 1e6):
            err(where, f"key {key!r}: expected a number of points >= 0, got {value!r}")
        else:
            out.append((key, float(value)))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Line:
    key: str
    points: float  # earned (>= 0) or subtracted (<= 0)
    how: str


@dataclass(frozen=True)
class Score:
    lines: tuple[Line, ...]
    raw: float  # earned minus penalties, floored at 0
    max_points: float
    total: float  # raw scaled to out_of, 2 decimals

    def line(self, key: str) -> Line | None:
        return next((x for x in self.lines if x.key == key), None)


def score(rubric: Rubric, g: Any, copy_of: Sequence[str] = ()) -> Score:
    """The rubric applied to one graded submission (``grade.Grade``)."""
    if g.error:
        lines = tuple(Line(key, 0.0, "not graded: " + g.error.splitlines()[0]) for key, _ in rubric.line_keys())
        return Score(lines, 0.0, rubric.max_points, 0.0)
    lines: list[Line] = []
    for key, value in rubric.points:
        if key == "variants":
            for p in rubric.parts:
                pg = g.part(p)
                n = pg.variants if pg else 0
                ok = n >= rubric.min_variants
                lines.append(Line(f"variants {p}", value if ok else 0.0,
                                  f"{n} trained variant{'s' * (n != 1)}, {rubric.min_variants} needed"))
        elif key == "chosen":
            for p in rubric.parts:
                pg = g.part(p)
                chosen = pg.chosen if pg else ""
                lines.append(Line(f"chosen {p}", value if chosen else 0.0,
                                  f"chosen: {chosen}" if chosen else "no chosen model"))
        elif key in QUESTIONS:
            present = key in g.questions
            lines.append(Line(key, value if present else 0.0,
                              "section present" if present else "section missing from the PDF"))
        elif key == "verified":
            n = len(g.mismatches)
            lines.append(Line(key, value if not n else 0.0,
                              "every check OK" if not n else f"{n} mismatch{'es' * (n != 1)}"))
        elif key == "parameters":
            lines.append(Line(key, value if not g.wrong_params else 0.0,
                              "all correct" if not g.wrong_params else "wrong: " + ", ".join(g.wrong_params)))
    for key, value in rubric.penalties:
        count, what = _occurrences(key, g, copy_of)
        lines.append(Line(f"penalty {key}", -value * count if count else 0.0, what))
    for kind, value in rubric.findings:
        hits = [f for f in g.findings if f.kind == kind]
        lines.append(Line(f"penalty finding {kind}", -value * len(hits) if hits else 0.0,
                          f"{len(hits)} finding{'s' * (len(hits) != 1)} of kind {kind!r}"
                          + (": " + "; ".join(f.subject for f in hits[:5]) if hits else "")))
    earned = sum(x.points for x in lines)
    raw = max(0.0, earned)
    top = rubric.max_points
    total = round(raw / top * rubric.out_of, 2) if rubric.out_of and top else round(raw, 2)
    return Score(tuple(lines), raw, top, total)


def _occurrences(key: str, g: Any, copy_of: Sequence[str]) -> tuple[int, str]:
    if key == "failed":
        return len(g.failed), (", ".join(g.failed) or "none") + " failed or diverged"
    if key == "stale":
        return len(g.stale), ("not trained with the current settings: " + ", ".join(g.stale)) if g.stale \
            else "all trained with the current settings"
    if key == "quick":
        return int(g.quick), "smoke runs (--quick)" if g.quick else "full runs"
    if key == "mismatch":
        n = len(g.mismatches)
        return n, f"{n} verification mismatch{'es' * (n != 1)}"
    if key == "copy":
        return int(bool(copy_of)), ("flagged as a copy with " + ", ".join(copy_of)) if copy_of else "not flagged"
    raise AssertionError(key)  # from_table admits only PENALTY_KEYS


def explain(rubric: Rubric, s: Score) -> str:
    """The arithmetic in one line: '2 + 2 + 0 + ... - 1 = 15 of 20 -> 15.00 / 20'."""
    terms = " ".join(("+ " if x.points >= 0 else "- ") + _n(abs(x.points)) for x in s.lines if x.points)
    terms = terms.removeprefix("+ ") or "0"
    scaled = f" -> {s.total:.2f} / {_n(rubric.out_of)}" if rubric.out_of else ""
    return f"{terms} = {_n(round(s.raw, 2))} of {_n(s.max_points)}{scaled}"
