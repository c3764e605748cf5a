"""Text that is safe to show and to store, whatever bytes it came from; durations for people.

Redis clients in taskchan read with ``encoding_errors="surrogateescape"``: a
stream entry that is not UTF-8 arrives as a ``str`` whose stray bytes are lone
surrogates (U+DC80..U+DCFF) instead of raising ``UnicodeDecodeError`` in the
middle of a reply.  Such text must never reach a template, a database column
or a log as it is; ``printable`` turns it into plain UTF-8 with the bytes
spelled ``\\xNN``.  PostgreSQL text columns also refuse NUL, so NUL is spelled
out as well.
"""

from __future__ import annotations

import json
import math
import re

_NOT_FROM_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def is_storable_text(text: str) -> bool:
    """UTF-8 encodable and free of NUL, which PostgreSQL text columns refuse."""
    return "\x00" not in text and is_utf8(text)


def printable(text: str) -> str:
    """``text`` safe to show and to store anywhere: valid UTF-8, no NUL.

    Bytes that were not UTF-8 (kept as surrogates by ``surrogateescape``) come
    out as ``\\xNN``, as do NULs; any other lone surrogate as ``\\udNNN``.
    ASCII text without NUL is returned as it is.
    """
    if text.isascii() and "\x00" not in text:
        return text
    # Surrogates that did not come from a byte (U+DC80..U+DCFF did) first, as \\udNNN.
    text = _NOT_FROM_A_BYTE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    data = text.encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def shown(text: str, limit: int = 120) -> str:
    """``text`` for an error message: printable, quoted and cut to ``limit`` characters."""
    cut = repr(printable(text[:limit]))
    return cut + (f" (cut; {len(text):,} characters)" if len(text) > limit else "")


def _not_a_number(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number; one past a float's range (1e400) would be infinity, which no JSON can carry back."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


#: JSON text as taskchan stores it: UTF-8 as it is, no spaces, no NaN or Infinity (ValueError).
#: One encoder for every call: json.dumps with options builds an encoder each time.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

#: ``json.loads`` that refuses NaN, Infinity and numbers past a float's range (ValueError).
#: One decoder for every call: json.loads with options builds a decoder and scanner each time.
strict_json = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite_float).decode


def json_for_people(value, indent: int | None = 2) -> str:
    """``value`` as printable JSON for a page, whatever a database row holds.

    Never raises: a value nested too deeply for the indenting encoder is shown
    compact, and one no encoder can write as its ``repr``.
    """
    for options in ({"indent": indent}, {}):
        try:
            return printable(json.dumps(value, ensure_ascii=False, **options))
        except RecursionError:
            continue
        except (TypeError, ValueError):
            break
    return printable(repr(value)[:10_000])


def duration(seconds: float) -> str:
    """12 s, 3 min, 2 h 5 min, 3 d: short and rounded down ("-" for no number, e.g. an infinite score)."""
    if not math.isfinite(seconds):
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds // 86400} d"
