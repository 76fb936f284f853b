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
from schemas.timestamps import out_of_range
from schemas.topics import Topic


class DecodeError(ValueError):
    """A record that is not a valid wire value; the message names the field."""


class InputDecoder:
    """Strict decoder of one input topic: msgspec checks the shape, this adds what a
    type cannot say. Every way a record can be wrong is a `msgspec.DecodeError`, so a
    caller that catches it can never be crashed by hostile bytes: nesting too deep
    for the stack (msgspec raises RecursionError), and timestamps outside the range
    the engine can compute with (`schemas.timestamps.out_of_range`)."""

    __slots__ = ("_decode",)

    def __init__(self, type_: Any) -> None:
        self._decode = msgspec.json.Decoder(type_).decode

    def decode(self, data: bytes | str | msgspec.Raw) -> Any:
        try:
            event = self._decode(data)
        except RecursionError:
            raise msgspec.DecodeError("JSON is nested too deeply") from None
        problem = out_of_range(event.ts)
        if problem is not None:
            raise msgspec.DecodeError(f"{problem} - at `$.ts`")
        return event


_INPUT_DECODERS: dict[str, InputDecoder] = {
    Topic.SESSION_START: InputDecoder(SessionStart),
    Topic.SESSION_HEARTBEAT: InputDecoder(SessionHeartbeat),
    Topic.SESSION_END: InputDecoder(SessionEnd),
    Topic.ALLOCATIONS: InputDecoder(Allocation),
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


def input_decoder(topic: str) -> InputDecoder:
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
    except RecursionError:
        raise DecodeError("JSON is nested too deeply") from None
    return event


def encode(value: object) -> bytes:
    """Compact JSON of any wire value."""
    return _encoder.encode(value)
