"""Where a document's bytes live: `raw/{doc_id}{extension}`, and the way back from a key.

Direct uploads arrive under `staging/{owner hash}/{upload_id}`, a prefix of the caller's own
that no document key shares: only a verified copy of them ever reaches `raw/`.
"""

from __future__ import annotations

import hashlib
import re

RAW_PREFIX = "raw/"
STAGING_PREFIX = "staging/"
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


def staging_key(owner: str, upload_id: str) -> str:
    """The key a direct upload's client writes to: under its owner's prefix, named by the id.

    The owner is hashed: a user id may hold characters a key should not, and the bucket's
    listing need not name users.
    """
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:32]
    return f"{STAGING_PREFIX}{owner_hash}/{upload_id}"
