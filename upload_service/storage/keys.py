"""Where a document's bytes live: `raw/{doc_id}{extension}`, and the way back from a key."""

from __future__ import annotations

import re

RAW_PREFIX = "raw/"
# Exactly what `new_doc_id` makes (`doc_` and a ULID) and an upload's extension: a key that does
# not match is not ours to judge, so the janitor never deletes it.
_RAW_KEY = re.compile(r"raw/(doc_[0-9A-HJKMNP-TV-Z]{26})(\.[A-Za-z0-9]{1,16})?")


def raw_key(doc_id: str, extension: str) -> str:
    """The key an upload stores its document under."""
    return f"{RAW_PREFIX}{doc_id}{extension}"


def doc_id_of(key: str) -> str | None:
    """The document id in a key made by `raw_key`, or None for any other key."""
    match = _RAW_KEY.fullmatch(key)
    return match.group(1) if match else None
