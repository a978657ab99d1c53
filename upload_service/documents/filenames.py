"""Client filenames reduced to safe display names, and the header that gives them back."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_FILENAME_BYTES = 255
FALLBACK_STEM = "upload"

_SEPARATORS = re.compile(r"[/\\]")
_LEADING = re.compile(r"^[\s.]+")
# Trailing dots go too: Windows drops them silently, and `report.pdf.` has no extension.
_TRAILING = re.compile(r"[\s.]+$")
_EXTENSION = re.compile(r"\.\w{1,16}")
# Bidirectional controls let `cod.exe` display as `exe.doc`; line separators break headers.
_INVISIBLE = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)
# RFC 5987 attr-char minus ALPHA / DIGIT, which `quote` always keeps.
_ATTR_CHAR_PUNCTUATION = "!#$&+-.^_`|~"


def safe_filename(raw: str) -> str:
    """Reduce a client's filename to a visible base name of at most 255 UTF-8 bytes."""
    name = _SEPARATORS.split(unicodedata.normalize("NFC", raw))[-1]
    name = "".join(ch for ch in name if _is_visible(ch))
    name = _TRAILING.sub("", unicodedata.normalize("NFC", name))
    stem, extension = split_extension(name)
    stem = _LEADING.sub("", stem) or FALLBACK_STEM
    budget = MAX_FILENAME_BYTES - len(extension.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        # Cut on a character boundary: "ignore" drops the partial character at the cut.
        stem = _TRAILING.sub("", encoded[:budget].decode("utf-8", "ignore")) or FALLBACK_STEM
    return stem + extension


def split_extension(name: str) -> tuple[str, str]:
    """Split `name` into stem and extension (`.` plus 1-16 word characters, else none)."""
    dot = name.rfind(".")
    if dot >= 0 and _EXTENSION.fullmatch(name, dot):
        return name[:dot], name[dot:]
    return name, ""


def content_disposition(filename: str) -> str:
    """Build an RFC 6266 `attachment` header value with an ASCII fallback and a UTF-8 name."""
    fallback = _ascii_fallback(filename).replace("\\", "\\\\").replace('"', '\\"')
    encoded = quote(filename, safe=_ATTR_CHAR_PUNCTUATION, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _is_visible(ch: str) -> bool:
    # Cc: C0/C1 controls and NUL; Cs: lone surrogates, which cannot be encoded in UTF-8.
    return unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _INVISIBLE


def _ascii_fallback(filename: str) -> str:
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", filename):
        if unicodedata.combining(ch):
            continue  # the accent of a decomposed letter: `é` falls back to `e`
        if ch == "%":
            out.append("_")  # RFC 6266 appendix D: some agents percent-decode `filename`
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) >= 0x80 and _is_visible(ch):
            out.append("_")
    return "".join(out)
