"""Decoders and encoder, built once and reused on every record."""

from typing import Any

import msgspec

from schemas.inputs import (
    Allocation,
    InputEvent,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from schemas.outputs import (
    AccessDenied,
    AllocationRejected,
    DeadLetter,
    OutputEvent,
    PassConsumed,
    PassReturned,
)
from schemas.topics import Topic


class DecodeError(ValueError):
    """A record that is not a valid wire value; the message names the field."""


_INPUT_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    Topic.SESSION_START: msgspec.json.Decoder(SessionStart),
    Topic.SESSION_HEARTBEAT: msgspec.json.Decoder(SessionHeartbeat),
    Topic.SESSION_END: msgspec.json.Decoder(SessionEnd),
    Topic.ALLOCATIONS: msgspec.json.Decoder(Allocation),
}
_OUTPUT_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    Topic.PASS_CONSUMED: msgspec.json.Decoder(PassConsumed),
    Topic.PASS_RETURNED: msgspec.json.Decoder(PassReturned),
    Topic.ACCESS_DENIED: msgspec.json.Decoder(AccessDenied),
    Topic.ALLOCATION_REJECTED: msgspec.json.Decoder(AllocationRejected),
    Topic.DEAD_LETTERS: msgspec.json.Decoder(DeadLetter),
}
_allocation_decoder = _INPUT_DECODERS[Topic.ALLOCATIONS]
_encoder = msgspec.json.Encoder()


def input_decoder(topic: str) -> msgspec.json.Decoder[Any]:
    """The strict decoder for an input topic (logical name); KeyError if none."""
    return _INPUT_DECODERS[topic]


def decode_input(topic: str, data: bytes | str) -> InputEvent:
    """Decode one input record; DecodeError says which field is wrong and why."""
    try:
        decoder = _INPUT_DECODERS[topic]
    except KeyError:
        raise DecodeError(f"unknown input topic {topic!r}") from None
    try:
        event: InputEvent = decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None
    return event


def decode_allocation(data: bytes | str) -> Allocation:
    try:
        event: Allocation = _allocation_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None
    return event


def decode_output(topic: str, data: bytes | str) -> OutputEvent | DeadLetter:
    try:
        event: OutputEvent | DeadLetter = _OUTPUT_DECODERS[topic].decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None
    return event


def encode(value: object) -> bytes:
    """Compact JSON of any wire value."""
    return _encoder.encode(value)
