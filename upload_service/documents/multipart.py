"""Stream the one file of a `multipart/form-data` body as it arrives, never holding it whole."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from upload_service.errors import MalformedUpload

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Chunks handed on are at most this big; parser pieces at least _MIN_DIRECT long pass through
# without a copy, smaller ones (1-byte network reads, boundary look-behind) are coalesced.
_MAX_CHUNK = 64 * 1024
_MIN_DIRECT = 16 * 1024
_MAX_PART_HEADERS = 16
_MAX_HEADER_LINE = 8 * 1024  # a 255-byte name, percent-encoded in `filename*` too, fits 8 times
# Everything that is not file data (other fields, headers, framing) may add up to this many
# parts' worth of the per-part limits; past it the body is refused, so draining always ends.
_NON_FILE_PARTS = 16

# RFC 2046 §5.1.1: 1 to 70 characters from `bchars`, the last one not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_PARAM = re.compile(
    r"""\s*(?P<key>[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^;"]*?))\s*(?:;|$)"""
)
# Only `\"` and `\\` are unescaped: clients send Windows paths (`C:\dir\a.pdf`) unescaped.
_QUOTED_PAIR = re.compile(r'\\(["\\])')


@dataclass(frozen=True)
class FilePart:
    """The file part's field name, the client's (unsanitised) filename and its declared type."""

    field_name: str
    filename: str
    content_type: str | None


class MultipartFileStream:
    """Reads a `multipart/form-data` body that must carry exactly one file, in `file_field`."""

    def __init__(
        self,
        content_type_header: str,
        body: AsyncIterator[bytes],
        *,
        file_field: str = "file",
        max_header_bytes: int = 16 * 1024,
        max_other_field_bytes: int = 64 * 1024,
    ) -> None:
        self._body = body
        self._file_field = file_field
        self._max_header_bytes = max_header_bytes
        self._max_other_field_bytes = max_other_field_bytes
        self._non_file_limit = _NON_FILE_PARTS * (max_header_bytes + max_other_field_bytes)
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(
            _boundary_of(content_type_header),
            callbacks,
            max_header_count=_MAX_PART_HEADERS,
            max_header_size=min(max_header_bytes, _MAX_HEADER_LINE),
        )
        self._headers: list[tuple[str, str]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._field_bytes = 0
        self._in_file = False
        self._file: FilePart | None = None
        self._file_done = False
        self._ended = False
        self._body_bytes = 0
        self._file_bytes = 0
        self._pending = bytearray()
        self._ready: deque[bytes] = deque()
        self._opened = False
        self._streaming = False

    async def open(self) -> FilePart:
        """Read the body until the file part's headers are parsed and return what they say."""
        if self._opened:
            raise RuntimeError("open() may be called once")
        self._opened = True
        while self._file is None:
            if self._ended:
                raise MalformedUpload(f"The body has no '{self._file_field}' part")
            await self._pull()
        return self._file

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the file's bytes as they arrive, then drain and check the rest of the body."""
        if self._file is None:
            raise RuntimeError("call open() before chunks()")
        if self._streaming:
            raise RuntimeError("chunks() may be iterated once")
        self._streaming = True
        ready = self._ready
        while True:
            while ready:
                yield ready.popleft()
            if self._file_done:
                break
            await self._pull()
        # Reading to the closing boundary is what detects a second file or a truncated body.
        while not self._ended:
            await self._pull()

    async def _pull(self) -> None:
        chunk = await anext(self._body, None)
        if chunk is None:
            raise MalformedUpload("The body ended before the closing boundary")
        if not chunk:
            return  # Starlette ends request.stream() with b"".
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # a mutable buffer could change under a chunk already handed on
        self._body_bytes += len(chunk)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedUpload(_describe(exc)) from exc
        if not self._ended and self._body_bytes - self._file_bytes > self._non_file_limit:
            raise MalformedUpload("The body carries too much besides the file")

    # Parser callbacks: they run synchronously inside MultipartParser.write.

    def _on_part_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0
        self._field_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._count_header_bytes(4)  # ": " and CRLF
        name = _decode_header(self._header_name).strip().lower()
        self._headers.append((name, _decode_header(self._header_value).strip()))
        self._header_name.clear()
        self._header_value.clear()

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > self._max_header_bytes:
            raise MalformedUpload("A part's headers are too large")

    def _on_headers_finished(self) -> None:
        dispositions = [value for name, value in self._headers if name == "content-disposition"]
        if len(dispositions) != 1:
            raise MalformedUpload("Each part needs exactly one Content-Disposition header")
        kind, params = _parse_params(dispositions[0])
        field = params.get("name")
        if kind.lower() != "form-data" or field is None:
            raise MalformedUpload("A part's Content-Disposition is not form-data with a name")
        carries_file = "filename" in params or "filename*" in params
        if field == self._file_field or carries_file:
            if self._file is not None:
                raise MalformedUpload("The body has more than one file part")
            if field != self._file_field:
                raise MalformedUpload(f"The file must be sent in the '{self._file_field}' field")
            filename = _filename_of(params)
            if not filename:
                raise MalformedUpload(f"The '{self._file_field}' part has no filename")
            content_type = next((v for n, v in self._headers if n == "content-type"), None)
            self._file = FilePart(field, filename, content_type or None)
            self._in_file = True

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if not self._in_file:
            self._field_bytes += size
            if self._field_bytes > self._max_other_field_bytes:
                raise MalformedUpload(
                    f"A form field is larger than {self._max_other_field_bytes} bytes"
                )
            return
        self._file_bytes += size
        if size < _MIN_DIRECT:
            self._pending += memoryview(data)[start:end]
            if len(self._pending) >= _MIN_DIRECT:
                self._flush_pending()
            return
        self._flush_pending()
        if start == 0 and end == len(data) and size <= _MAX_CHUNK:
            self._ready.append(data)  # the common case: a whole network chunk, no copy
            return
        for offset in range(start, end, _MAX_CHUNK):
            self._ready.append(data[offset : min(offset + _MAX_CHUNK, end)])

    def _flush_pending(self) -> None:
        if self._pending:
            self._ready.append(bytes(self._pending))
            self._pending.clear()

    def _on_part_end(self) -> None:
        if self._in_file:
            self._flush_pending()
            self._in_file = False
            self._file_done = True

    def _on_end(self) -> None:
        self._ended = True


def _describe(error: MultipartParseError) -> str:
    # The parser's own messages carry byte offsets and reprs; clients get a stable sentence.
    reason = str(error)
    if reason.startswith("Maximum header count"):
        return "A part has too many headers"
    if reason.startswith("Maximum header"):
        return "A part's headers are too large"
    return "The body is not valid multipart/form-data"


def _boundary_of(content_type_header: str) -> str:
    kind, params = _parse_params(content_type_header)
    if kind.lower() != "multipart/form-data":
        raise MalformedUpload("The request body is not multipart/form-data")
    boundary = params.get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise MalformedUpload("The multipart boundary is missing or invalid")
    return boundary


def _parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `type; key=value; key="quoted"` into the type and its parameters (keys lowercased)."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:
            # An unparsable parameter is skipped, not guessed at; a missing name or filename
            # is reported by the caller.
            next_sep = rest.find(";", pos)
            if next_sep == -1:
                break
            pos = next_sep + 1
            continue
        key = match["key"].lower()
        if key in params:
            # Parsers that disagree on which duplicate wins let one part pass for another.
            raise MalformedUpload(f"The parameter '{key}' appears twice in a header")
        quoted = match["quoted"]
        params[key] = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else match["token"]
        pos = match.end()
    return kind.strip(), params


def _filename_of(params: dict[str, str]) -> str | None:
    """Prefer the RFC 5987 `filename*` over the plain `filename` when it decodes (RFC 6266 §4.3)."""
    extended = params.get("filename*")
    if extended is not None:
        decoded = _decode_ext_value(extended)
        if decoded:
            return decoded
    return params.get("filename")


def _decode_ext_value(value: str) -> str | None:
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not sep or not sep2:
        return None
    charset = charset.strip().lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except UnicodeDecodeError:
        return None


def _decode_header(raw: bytearray) -> str:
    # Browsers send raw UTF-8 in quoted filenames; anything else is read as Latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
