"""Tell what a file is from its bytes as they stream by, and check that against its extension."""

from __future__ import annotations

import struct
from collections import deque
from enum import Enum

from upload_service.documents.filenames import safe_filename, split_extension
from upload_service.errors import UnsupportedFileType

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_TYPE_OF_EXTENSION = {".pdf": PDF, ".png": PNG, ".jpg": JPEG, ".jpeg": JPEG, ".docx": DOCX}
_SIGNATURE = {
    PDF: b"%PDF-",
    PNG: b"\x89PNG\r\n\x1a\n",
    JPEG: b"\xff\xd8\xff",
    DOCX: b"PK\x03\x04",  # a ZIP whose first entry starts at offset 0
}
_DOCX_ENTRIES = frozenset({b"[content_types].xml", b"word/document.xml"})

# ZIP layout (APPNOTE.TXT): local file header, central directory header, end records.
_LOCAL = struct.Struct("<4s2xHxx8xIIHH")  # signature, flags, compressed, uncompressed, name, extra
_CENTRAL_SIG = b"PK\x01\x02"
_CENTRAL_LEN = 46
_EOCD = struct.Struct("<4s4H2IH")
_EOCD64_LOCATOR_LEN = 20
_EOCD64 = struct.Struct("<4sQ2H2I4Q")
_DATA_DESCRIPTOR_FLAG = 0x08
# A ZIP's end record sits in its last 64 KiB + 22 bytes; the rest of the tail is for the central
# directory, which is read from here when it fits (a DOCX's is a few KiB).
_TAIL_BYTES = 256 * 1024
# What `ContentSniffer.judge_ends` needs of a stored file: its first and last bytes.
HEAD_BYTES = 8 * 1024
TAIL_BYTES = _TAIL_BYTES


def extension_of(filename: str) -> str:
    """Return the lowercased extension (with its dot) of the name `safe_filename` makes of it."""
    return split_extension(safe_filename(filename))[1].lower()


class ContentSniffer:
    """Fed a file's chunks in order, decides whether its bytes are what its extension claims."""

    def __init__(self, extension: str, allowed: list[str]) -> None:
        self._extension = extension.lower()
        self._allowed = list(allowed)
        expected = _TYPE_OF_EXTENSION.get(self._extension)
        if expected is None or self._extension not in {ext.lower() for ext in allowed}:
            # Refused before a byte is stored: the extension alone decides this.
            what = f"'{self._extension}' files" if self._extension else "Files without an extension"
            raise UnsupportedFileType(f"{what} are not accepted", self._allowed)
        self._expected = expected
        self._signature = _SIGNATURE[expected]
        self._head = b""
        self._zip = _ZipScanner() if expected == DOCX else None

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the file into account; cheap, and it never raises."""
        if len(self._head) < len(self._signature):
            self._head += chunk[: len(self._signature) - len(self._head)]
        if self._zip is not None:
            self._zip.feed(chunk)

    def check_prefix(self, head: bytes | None = None) -> None:
        """Raise now if the first bytes (fed so far, or `head`) already contradict the type."""
        seen = self._head if head is None else head[: len(self._signature)]
        if not self._signature.startswith(seen):
            raise self._mismatch()

    def finish(self) -> str:
        """Return the detected MIME type once the whole file was fed, or raise if it is not one."""
        self.check_prefix()
        if len(self._head) < len(self._signature):
            raise self._mismatch()
        if self._zip is not None and not self._zip.holds(_DOCX_ENTRIES):
            raise self._mismatch()
        return self._expected

    @property
    def reads_tail(self) -> bool:
        """Whether `judge_ends` looks at the tail (a ZIP's central directory)."""
        return self._zip is not None

    def judge_ends(self, head: bytes, tail: bytes) -> str | None:
        """The type of a stored file from its first bytes and its last `TAIL_BYTES` (all of it
        when shorter), or None when that cannot tell (a ZIP directory larger than the tail).

        Raises as `finish` does when the ends already show the bytes are not the type.
        """
        signature = self._signature
        if not head.startswith(signature):
            raise self._mismatch()
        if self._zip is None:
            return self._expected
        central = _central_directory_names(tail)
        if central is _Central.NOT_A_ZIP:
            raise self._mismatch()
        if central is _Central.OUT_OF_REACH:
            return None
        if not central >= _DOCX_ENTRIES:
            raise self._mismatch()
        return self._expected

    def _mismatch(self) -> UnsupportedFileType:
        return UnsupportedFileType(
            f"The file's content does not match its '{self._extension}' extension", self._allowed
        )


class _ZipScanner:
    """Learns a ZIP's entry names without inflating anything, in bounded memory.

    Local file headers are read as the stream passes, skipping each entry's data by its declared
    size; an entry whose sizes follow its data (a data descriptor) ends that walk, because finding
    its end would mean inflating or guessing. The last `_TAIL_BYTES` are kept so that the central
    directory, which lists every entry, can be read at the end: it is the authority when it fits.
    """

    def __init__(self) -> None:
        self._size = 0
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._walking = True
        self._skip = 0
        self._header = bytearray()
        self._header_len = _LOCAL.size
        self._local_names: set[bytes] = set()

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._keep_tail(chunk)
        position = 0
        while self._walking and position < len(chunk):
            if self._skip:
                step = min(self._skip, len(chunk) - position)
                self._skip -= step
                position += step
                continue
            wanted = self._header_len - len(self._header)
            self._header += chunk[position : position + wanted]
            position += wanted
            if len(self._header) == self._header_len:
                self._read_local_header()

    def holds(self, names: frozenset[bytes]) -> bool:
        """Whether the ZIP has all `names` (compared case-insensitively, as OPC part names are)."""
        tail = b"".join(self._tail)
        central = _central_directory_names(tail)
        if central is _Central.NOT_A_ZIP:
            return False
        if central is _Central.OUT_OF_REACH:
            # Larger than the tail: the local headers walked are all there is to go on.
            return names <= self._local_names
        return names <= central

    def _keep_tail(self, chunk: bytes) -> None:
        if len(chunk) > _TAIL_BYTES:
            chunk = chunk[-_TAIL_BYTES:]
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= _TAIL_BYTES:
            self._tail_len -= len(self._tail.popleft())

    def _read_local_header(self) -> None:
        signature, flags, compressed, _size, name_len, extra_len = _LOCAL.unpack_from(self._header)
        if signature != b"PK\x03\x04":
            self._walking = False  # the central directory (or garbage): no more local entries
            return
        full_len = _LOCAL.size + name_len + extra_len
        if len(self._header) < full_len:
            self._header_len = full_len
            return
        name = bytes(self._header[_LOCAL.size : _LOCAL.size + name_len]).lower()
        if name in _DOCX_ENTRIES:
            self._local_names.add(name)
        if flags & _DATA_DESCRIPTOR_FLAG:
            self._walking = False
            return
        if compressed == 0xFFFFFFFF:
            compressed = _zip64_compressed_size(bytes(self._header[_LOCAL.size + name_len :]))
            if compressed < 0:
                self._walking = False
                return
        self._skip = compressed
        self._header.clear()
        self._header_len = _LOCAL.size


class _Central(Enum):
    NOT_A_ZIP = "no valid end record or central directory"
    OUT_OF_REACH = "the central directory starts before the tail kept"


def _central_directory_names(tail: bytes) -> frozenset[bytes] | _Central:
    """The lowercased entry names listed by the central directory at the end of `tail`."""
    eocd = tail.rfind(b"PK\x05\x06", max(0, len(tail) - _EOCD.size - 0xFFFF))
    if eocd < 0 or eocd + _EOCD.size > len(tail):
        return _Central.NOT_A_ZIP
    _sig, _disk, _cd_disk, _disk_entries, _entries, cd_size, _cd_offset, _comment = (
        _EOCD.unpack_from(tail, eocd)
    )
    cd_end = eocd
    locator = eocd - _EOCD64_LOCATOR_LEN
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        # ZIP64: the real sizes are in the record just before the locator.
        record = locator - _EOCD64.size
        if record < 0:
            return _Central.OUT_OF_REACH
        fields = _EOCD64.unpack_from(tail, record)
        if fields[0] != b"PK\x06\x06":
            return _Central.NOT_A_ZIP
        cd_size, cd_end = fields[8], record
    cd_start = cd_end - cd_size
    if cd_start < 0:
        return _Central.OUT_OF_REACH
    names: set[bytes] = set()
    position = cd_start
    while position < cd_end:
        if tail[position : position + 4] != _CENTRAL_SIG or position + _CENTRAL_LEN > cd_end:
            return _Central.NOT_A_ZIP
        name_len, extra_len, comment_len = struct.unpack_from("<3H", tail, position + 28)
        start = position + _CENTRAL_LEN
        names.add(tail[start : start + name_len].lower())
        position = start + name_len + extra_len + comment_len
    return frozenset(names)


def _zip64_compressed_size(extra: bytes) -> int:
    """The compressed size from a local header's ZIP64 extra field, or -1 if there is none."""
    position = 0
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, position)
        if tag == 0x0001 and size >= 16:
            # In a local header the field holds the uncompressed, then the compressed size.
            return int(struct.unpack_from("<Q", extra, position + 12)[0])
        position += 4 + size
    return -1
