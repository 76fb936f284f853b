"""The stream's single-writer token ledger: every allocation decided once (R9, R10).

In the stream the pools live on group partitions and the ledger on the one-partition
allocations topic, so the ledger cannot read a pool: it decides against what the
partitions last told it (feedback) and must stay safe while grants and feedback are
in flight. Two rules keep the licence from ever being over-allocated:

- a group's tokens stay counted at the largest share it may still hold until its
  partition reports on the latest grant (`grant_seq`): a report about an older grant
  describes a state the partition has not left yet, or has left, and is ignored;
- a removed UAP's token stays quarantined until every partition told its last use.

Pure: the worker feeds in allocations and feedback and sends out what comes back.
The whole state is one record (`WriterState`), so persisting it is one atomic write.
"""

from typing import NamedTuple

import msgspec

from rules.config import Config, Durations
from rules.ids import output_id
from rules.ledger import Ledger, LedgerRecord
from schemas.inputs import Allocation, Licence, LoginGroup
from schemas.internal import Feedback, Grant, GroupTokens, GroupUsage, UserAccessChange
from schemas.outputs import AllocationRejected
from schemas.timestamps import from_micros, to_micros

PENDING = 1 << 62
"""Quarantine end of a removed UAP until every group partition told its last use."""


class WriterState(msgspec.Struct, array_like=True):
    """Everything the single writer knows; `offset` first, so it can be read alone."""

    offset: int = -1
    """Offset of the last allocation decided."""
    ledger: LedgerRecord = msgspec.field(default_factory=LedgerRecord)
    tokens: dict[str, int] = msgspec.field(default_factory=dict)
    """Group → tokens accepted."""
    counted: dict[str, int] = msgspec.field(default_factory=dict)
    """Group → tokens its partition may still count (passes in use keep theirs, R10)."""
    grant_seq: dict[str, int] = msgspec.field(default_factory=dict)
    """Group → sequence number of the latest grant sent for it."""
    pending: dict[str, tuple[int, dict[int, int | None]]] = msgspec.field(
        default_factory=dict
    )
    """Removed UAP → (removal µs, partition → last use) until every partition told."""


class OffsetOnly(msgspec.Struct, array_like=True):
    offset: int = -1


class Decision(NamedTuple):
    grants: list[Grant]
    """`GroupTokens` go to their group's partition, `UserAccessChange` to every one."""
    rejection: AllocationRejected | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WriterState)
_offset_decoder = msgspec.msgpack.Decoder(OffsetOnly)


def decided_offset(data: bytes) -> int:
    """The `offset` of an encoded state, without decoding the rest."""
    return _offset_decoder.decode(data).offset


class SingleWriterLedger:
    __slots__ = ("_span", "ledger", "partitions", "state")

    def __init__(self, config: Config, partitions: int, state: WriterState | None = None) -> None:
        self.state = state if state is not None else WriterState()
        self.ledger = Ledger(config, self.state.ledger)
        self.partitions = partitions
        self._span = Durations.of(config).uap_quarantine

    @classmethod
    def from_bytes(
        cls, config: Config, partitions: int, data: bytes | None
    ) -> "SingleWriterLedger":
        return cls(config, partitions, _decoder.decode(data) if data else None)

    def to_bytes(self) -> bytes:
        return _encoder.encode(self.state)

    def _counted(self) -> dict[str, int]:
        s = self.state
        return {g: max(n, s.counted.get(g, 0)) for g, n in s.tokens.items()}

    def committed(self, t: int) -> int:
        """Tokens held against the licence at `t`: UAPs, quarantine (pending included)
        and every group's largest possible share (R10)."""
        return self.ledger.committed(t, self._counted().values())

    def decide(self, ev: Allocation, offset: int) -> Decision:
        """Decide the allocation at `offset` of the allocations topic."""
        s, ledger = self.state, self.ledger
        s.offset = max(s.offset, offset)
        t = ledger.at(to_micros(ev.ts))
        counted = self._counted()
        reason: str | None = None
        grants: list[Grant] = []
        if isinstance(ev, Licence):
            reason = ledger.set_licence(ev.total_tokens, t, counted.values())
        elif isinstance(ev, LoginGroup):
            before = counted.get(ev.group, 0)
            if ev.tokens > before:
                others = [v for g, v in counted.items() if g != ev.group]
                reason = ledger.fits(ev.tokens, t, others)
            if reason is None:
                s.tokens[ev.group] = ev.tokens
                # Until the partition reports on this grant, keep counting the old
                # share: passes in use may hold it (R10).
                s.counted[ev.group] = before
                seq = s.grant_seq[ev.group] = offset + 1
                grants.append(GroupTokens(event_id=ev.event_id, ts=ev.ts, group=ev.group,
                                          tokens=ev.tokens, seq=seq))
        elif ev.action == "assign":
            reason = ledger.assign(ev.user_id, t, counted.values())
            if reason is None:
                grants.append(UserAccessChange(event_id=ev.event_id, ts=ev.ts,
                                               user_id=ev.user_id, assigned=True))
        elif ev.user_id in ledger.uap:
            # Quarantined until every partition told its last use of the UAP (R9).
            del ledger.uap[ev.user_id]
            s.ledger.quarantine[ev.user_id] = PENDING
            s.pending[ev.user_id] = (t, {})
            grants.append(UserAccessChange(event_id=ev.event_id, ts=ev.ts,
                                           user_id=ev.user_id, assigned=False))
        if reason is None:
            return Decision(grants, None)
        return Decision(grants, AllocationRejected(
            event_id=output_id("ar", ev.event_id, t), ts=from_micros(t), reason=reason,
            request=ev,
        ))

    def on_feedback(self, fb: Feedback) -> tuple[str, int | None] | None:
        """Learn from a group partition. Returns (user, quarantine end or None if
        freed) when a removed UAP's quarantine is resolved, else None."""
        s = self.state
        if isinstance(fb, GroupUsage):
            if fb.grant_seq == s.grant_seq.get(fb.group, 0):
                s.counted[fb.group] = fb.counted_tokens
            return None
        pending = s.pending.get(fb.user_id)
        if pending is None:
            return None
        removed_at, replies = pending
        replies[fb.partition] = fb.last_used
        if len(replies) < self.partitions:
            return None
        del s.pending[fb.user_id]
        uses = [u for u in replies.values() if u is not None]
        until = max(uses) + self._span if uses else 0
        quarantine = s.ledger.quarantine
        if quarantine.get(fb.user_id) != PENDING:
            return None  # given back to the user meanwhile (R9)
        if until > removed_at:
            quarantine[fb.user_id] = until
            return fb.user_id, until
        del quarantine[fb.user_id]
        return fb.user_id, None
