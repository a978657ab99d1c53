"""The saved state of a partial object on S3, and its JSON form kept in the caller's row.

A partial object is one multipart upload on its final key: the parts sent so far (all of a
whole part size, at least S3's 5 MiB) and the tail, the bytes after the last part that do not
yet fill one. The tail is kept in S3 as small objects under `tus-tails/{key}/`, one per save,
so that any process can carry on. Absorbed tail objects stay readable until the state that no
longer names them is the caller's: that state lists them as garbage for the next call to
delete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from upload_service.storage.partial import PartialState

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# Never under `raw/`: the janitor's orphan sweep must not see a tail as a row-less document.
TAILS_PREFIX = "tus-tails/"


def tails_prefix(key: str) -> str:
    """The prefix under which the tail objects of the partial object for `key` are kept."""
    return f"{TAILS_PREFIX}{key}/"


@dataclass(frozen=True, slots=True)
class SavedPart:
    """A part of the multipart upload that a save made durable."""

    number: int
    etag: str
    size: int
    checksum: str  # base64 CRC32, as S3 reports it; completion must repeat it

    def completed(self) -> CompletedPartTypeDef:
        """The part as `complete_multipart_upload` names it."""
        return {"PartNumber": self.number, "ETag": self.etag, "ChecksumCRC32": self.checksum}


@dataclass(frozen=True, slots=True)
class TailSegment:
    """One stored piece of the tail, in the order the bytes came."""

    key: str
    size: int
    crc32: int  # checked when the segment is read back into a part


@dataclass(frozen=True, slots=True)
class S3PartialState:
    """What a partial object on S3 is between requests; the caller keeps it as JSON."""

    upload_id: str
    parts: tuple[SavedPart, ...] = ()
    tail: tuple[TailSegment, ...] = ()
    # Tail objects this state no longer needs; deleted by the next append, finish or discard.
    garbage: tuple[str, ...] = field(default=())

    @property
    def parts_size(self) -> int:
        """Bytes held in parts."""
        return sum(part.size for part in self.parts)

    @property
    def tail_size(self) -> int:
        """Bytes held in the tail."""
        return sum(segment.size for segment in self.tail)

    @property
    def size(self) -> int:
        """Every durable byte: the offset this state stands for."""
        return self.parts_size + self.tail_size

    @property
    def next_part_number(self) -> int:
        """The number the next part takes: a part a lost request sent under it is replaced."""
        return max((part.number for part in self.parts), default=0) + 1

    def to_json(self) -> PartialState:
        """The JSON-able form the caller stores."""
        return {
            "upload_id": self.upload_id,
            "parts": [
                {"number": p.number, "etag": p.etag, "size": p.size, "checksum": p.checksum}
                for p in self.parts
            ],
            "tail": [{"key": s.key, "size": s.size, "crc32": s.crc32} for s in self.tail],
            "garbage": list(self.garbage),
        }

    @classmethod
    def from_json(cls, state: PartialState) -> S3PartialState:
        """Read a stored state back, refusing one this backend did not write."""
        try:
            return cls(
                upload_id=_text(state["upload_id"]),
                parts=tuple(
                    SavedPart(
                        number=_count(item["number"]),
                        etag=_text(item["etag"]),
                        size=_count(item["size"]),
                        checksum=_text(item["checksum"]),
                    )
                    for item in state["parts"]
                ),
                tail=tuple(
                    TailSegment(
                        key=_text(item["key"]),
                        size=_count(item["size"]),
                        crc32=_count(item["crc32"]),
                    )
                    for item in state["tail"]
                ),
                garbage=tuple(_text(item) for item in state.get("garbage", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("not the state of a partial object on S3") from exc


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value
