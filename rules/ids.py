"""Deterministic output ids: the same facts always give the same id.

An id hashes what makes an output unique by meaning (its kind, group, holder or
session and instant), so a re-run after a crash emits the same ids and downstream can
drop the duplicates. Hashing an encoded tuple keeps ids unambiguous whatever
characters the names contain.
"""

from hashlib import blake2b

import msgspec

_encode = msgspec.msgpack.encode
_blank = blake2b(digest_size=12)
"""A fresh 12-byte blake2b: copying it skips parsing the parameters for every id."""


def output_id(kind: str, *parts: str | int | None) -> str:
    h = _blank.copy()
    h.update(_encode(parts))
    return kind + "-" + h.hexdigest()
