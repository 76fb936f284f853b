"""The pure licensing engine: state + event + time → new state + outputs.

Nothing here reads a clock, does I/O or imports a streaming framework; the stream,
`replay` and `estimate` are shells around it.
"""

from rules.config import Config
from rules.engine import Engine
from rules.estimate import Estimate, estimate_tokens
from rules.ordering import BatchMerge, TimestampMerge
from rules.records import Snapshot

__all__ = [
    "BatchMerge",
    "Config",
    "Engine",
    "Estimate",
    "Snapshot",
    "TimestampMerge",
    "estimate_tokens",
]
