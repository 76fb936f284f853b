"""The token ledger: licence, user access passes and their quarantine (R9, R10).

Allocation changes are rare and global, so the ledger checks them against the sum
over groups at the moment they apply; the per-event hot path only reads the set of
UAP holders and stamps their last use.
"""

from collections.abc import Iterable

import msgspec

from rules.config import Config, Durations


class LedgerRecord(msgspec.Struct):
    total_tokens: int = 0
    uap: dict[str, int] = msgspec.field(default_factory=dict)
    """UAP holder → last use (µs); -1 if never used."""
    quarantine: dict[str, int] = msgspec.field(default_factory=dict)
    """Removed UAP holder → instant its token leaves quarantine."""
    clock: int | None = None


NEVER_USED = -1


class Ledger:
    """Decides allocation changes; `uap` is shared with every pool."""

    __slots__ = ("_quarantine_span", "record")

    def __init__(self, config: Config, record: LedgerRecord | None = None) -> None:
        self._quarantine_span = Durations.of(config).uap_quarantine
        self.record = record if record is not None else LedgerRecord()

    @property
    def uap(self) -> dict[str, int]:
        return self.record.uap

    def at(self, ts: int) -> int:
        clock = self.record.clock
        if clock is not None and ts < clock:
            return clock
        self.record.clock = ts
        return ts

    def quarantined(self, t: int) -> int:
        """Tokens still in quarantine at `t`; expired entries are dropped."""
        q = self.record.quarantine
        for user in [u for u, until in q.items() if until <= t]:
            del q[user]
        return len(q)

    def committed(self, t: int, group_tokens: Iterable[int]) -> int:
        """Tokens in use: UAPs, quarantine and every group's counted tokens (R10)."""
        return len(self.record.uap) + self.quarantined(t) + sum(group_tokens)

    def set_licence(self, total: int, t: int, group_tokens: Iterable[int]) -> str | None:
        """Apply a licence size; a reason if it is below what is already allocated."""
        committed = self.committed(t, group_tokens)
        if total < committed:
            return f"licence_below_allocated: {committed} tokens allocated, licence {total}"
        self.record.total_tokens = total
        return None

    def fits(self, extra: int, t: int, group_tokens: Iterable[int]) -> str | None:
        """None if `extra` more tokens fit the licence, else the reason they do not."""
        committed = self.committed(t, group_tokens)
        total = self.record.total_tokens
        if committed + extra > total:
            free = max(0, total - committed)
            return f"insufficient_tokens: needs {extra}, {free} free of {total}"
        return None

    def assign(self, user_id: str, t: int, group_tokens: Iterable[int]) -> str | None:
        rec = self.record
        if user_id in rec.uap:
            return None  # already holds one: a repeat changes nothing (R13)
        until = rec.quarantine.get(user_id)
        if until is not None and until > t:  # back to the same user: costs nothing (R9)
            del rec.quarantine[user_id]
            rec.uap[user_id] = until - self._quarantine_span
            return None
        reason = self.fits(1, t, group_tokens)
        if reason is None:
            rec.uap[user_id] = NEVER_USED
        return reason

    def remove(self, user_id: str, t: int) -> None:
        rec = self.record
        last = rec.uap.pop(user_id, None)
        if last is None or last == NEVER_USED:
            return  # not held (a repeat), or never used: freed at once
        until = last + self._quarantine_span
        if until > t:  # used in the last 7 days: quarantined (R9)
            rec.quarantine[user_id] = until
