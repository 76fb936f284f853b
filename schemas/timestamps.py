"""RFC 3339 timestamps on the wire, integer microseconds inside the engine.

Integers keep the rules exact and cheap: no float rounding, no tz-aware comparisons.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

# An RFC 3339 timestamp that must carry a UTC offset: a naive one is a decode error.
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICRO = timedelta(microseconds=1)
"""`(ts - EPOCH) // ONE_MICRO` is `to_micros(ts)`; hot paths inline it to save a call."""
_EPOCH = EPOCH
_ONE_MICRO = ONE_MICRO


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (never via float seconds)."""
    return (ts - _EPOCH) // _ONE_MICRO


def from_micros(us: int) -> datetime:
    """The UTC datetime of `us` microseconds since the epoch."""
    return _EPOCH + timedelta(0, 0, us)  # positional: a third faster than keywords


def micros(td: timedelta) -> int:
    """A duration in whole microseconds."""
    return td // _ONE_MICRO
