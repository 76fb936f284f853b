"""Wire types of tokenpool: the only place JSON shape lives.

Every input and output of the service is a frozen msgspec Struct; decoding is strict
(wrong types, missing fields, unknown kinds and naive timestamps are errors that name
the field). Decoders and encoders are built once, here, and reused.
"""

from schemas.codec import (
    DecodeError,
    decode_allocation,
    decode_input,
    decode_output,
    encode,
    input_decoder,
)
from schemas.inputs import (
    Allocation,
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    UserAccess,
)
from schemas.outputs import (
    AccessDenied,
    AllocationRejected,
    DeadLetter,
    OutputEvent,
    PassConsumed,
    PassReturned,
)
from schemas.replay import GroupSummary, ReplayRecord, StateFile
from schemas.timestamps import Timestamp, from_micros, to_micros
from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, Topic

__all__ = [
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "AccessDenied",
    "Allocation",
    "AllocationRejected",
    "DeadLetter",
    "DecodeError",
    "GroupSummary",
    "InputEvent",
    "Licence",
    "LoginGroup",
    "OutputEvent",
    "PassConsumed",
    "PassReturned",
    "ReplayRecord",
    "SessionEnd",
    "SessionHeartbeat",
    "SessionStart",
    "StateFile",
    "Timestamp",
    "Topic",
    "UserAccess",
    "decode_allocation",
    "decode_input",
    "decode_output",
    "encode",
    "from_micros",
    "input_decoder",
    "to_micros",
]
