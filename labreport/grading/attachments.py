"""Bounded reading of a report PDF's attachments: a hand-in is untrusted input.

``read(reader, submission)`` returns the PDF's attached files as bytes, and ``parse_json``
parses one of them, each within limits stated once here: how many files, how long their
names, how many bytes once decompressed (decompression stops at the limit: no zip bomb
reaches memory), how deeply nested, how many digits an integer has. Anything over a limit
is an :class:`AttachmentError` (exit 2) naming the submission and the attachment, so
``verify`` prints one line and ``grade`` gives that submission a row instead of stopping.
(The attached TOML goes through config.loader, which bounds size, nesting and numbers itself.)
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

from labreport.errors import UserError

MAX_ATTACHMENTS = 16  # a labreport PDF carries 2
MAX_NAME_CHARS = 255  # a file name on common file systems
MAX_ATTACHMENT_BYTES = 50_000_000  # decompressed; results.json of the 24-experiment lab is ~0.3 MB
MAX_JSON_DEPTH = 64  # results.json nests 6 levels
MAX_INT_DIGITS = 30  # counts and sizes fit in 19 digits (64 bits)
MAX_FLOAT_CHARS = 64  # a float as JSON writes it is at most ~25 characters


class AttachmentError(UserError):
    """A submission's attachment is over a limit or not parseable (exit 2)."""

    exit_status = 2


def _fail(submission: Path | str, name: str, what: str) -> AttachmentError:
    shown = name if len(name) <= 60 else name[:60] + "..."
    return AttachmentError(f"{submission}: the attached {shown} {what}")


# --------------------------------------------------------------------------- reading
def read(reader: Any, submission: Path | str) -> dict[str, bytes]:
    """Every attached file of the pypdf ``reader`` (name -> decompressed bytes), bounded."""
    out: dict[str, bytes] = {}
    for i, entry in enumerate(reader.attachment_list):
        if i >= MAX_ATTACHMENTS:
            raise AttachmentError(f"{submission}: more than {MAX_ATTACHMENTS} attached files; a labreport"
                                  " report carries 2")
        name = str(entry.name)
        if len(name) > MAX_NAME_CHARS:
            raise _fail(submission, name, f"has a name of {len(name):,} characters; at most {MAX_NAME_CHARS}")
        if name in out:
            continue  # pypdf lists a name once per file specification; the first one counts
        out[name] = _content(entry, submission, name)
    return out


def _content(entry: Any, submission: Path | str, name: str) -> bytes:
    """The file's bytes: stored plain, or with a single /FlateDecode (what WeasyPrint and pypdf write).

    Anything else is refused rather than handed to pypdf's decoders: they decode a whole
    chain in memory, and a few kB of /FlateDecode twice, or with a predictor, is gigabytes.
    """
    stream = entry._embedded_file  # pypdf keeps the file's stream here; no public raw access
    raw = getattr(stream, "_data", None)
    filters = stream.get("/Filter")
    if filters is not None and not isinstance(filters, (list, tuple)):
        filters = [filters]
    filters = [str(f) for f in (filters or [])]
    if not isinstance(raw, bytes):  # pragma: no cover - a pypdf without _data: decode, then bound
        data = stream.get_data()
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise _fail(submission, name, f"is larger than {MAX_ATTACHMENT_BYTES:,} bytes")
        return data
    if filters not in ([], ["/FlateDecode"]) or stream.get("/DecodeParms") is not None:
        shown = " ".join(filters) + (" with /DecodeParms" if stream.get("/DecodeParms") is not None else "")
        raise _fail(submission, name, f"is stored with the PDF filter {shown}; labreport reads attachments"
                    " stored plain or with one /FlateDecode")
    if len(raw) > MAX_ATTACHMENT_BYTES:
        raise _fail(submission, name, f"is larger than {MAX_ATTACHMENT_BYTES:,} bytes")
    return inflate(raw, submission, name) if filters else raw


def inflate(raw: bytes, submission: Path | str, name: str) -> bytes:
    """zlib-decompress ``raw``, stopping one byte past MAX_ATTACHMENT_BYTES."""
    d = zlib.decompressobj()
    try:
        data = d.decompress(raw, MAX_ATTACHMENT_BYTES + 1)
    except zlib.error as e:
        raise _fail(submission, name, f"is corrupt (zlib: {e})") from None
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise _fail(submission, name, f"is larger than {MAX_ATTACHMENT_BYTES:,} bytes once decompressed")
    return data


# --------------------------------------------------------------------------- JSON
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(text: str) -> int:
    """The deepest [ / { nesting of a JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    for m in _DEPTH_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def parse_json(data: bytes, submission: Path | str, name: str) -> Any:
    """The JSON document in ``data``, refusing what no labreport wrote: NaN/Infinity, nesting
    deeper than MAX_JSON_DEPTH, integers longer than MAX_INT_DIGITS, non-finite floats."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(submission, name, "is not UTF-8 text") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise _fail(submission, name, f"nests {depth:,} levels deep; at most {MAX_JSON_DEPTH}")

    def parse_int(s: str) -> int:
        if len(s.lstrip("-")) > MAX_INT_DIGITS:
            raise ValueError(f"an integer of {len(s.lstrip('-')):,} digits; at most {MAX_INT_DIGITS}")
        return int(s)

    def parse_float(s: str) -> float:
        value = float(s) if len(s) <= MAX_FLOAT_CHARS else None
        if value is None or value in (float("inf"), float("-inf")):
            raise ValueError(f"the number {s[:20]}{'...' if len(s) > 20 else ''} is out of range")
        return value

    def parse_constant(s: str) -> Any:
        # labreport writes JSON with allow_nan=False: NaN/Infinity mean someone else wrote it.
        raise ValueError(f"{s} is not JSON")

    try:
        return json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except RecursionError:  # json_depth should make this unreachable
        raise _fail(submission, name, "nests too deeply") from None
    except ValueError as e:
        raise _fail(submission, name, f"is not valid JSON ({e})") from None
