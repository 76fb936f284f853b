"""Counterfactual runs of one history: the same sessions under other allocations.

Planning replays a history more than once: as it happened; with every pool unlimited
and no user access passes (demand: what people asked for, undistorted by denials,
and what UAP holders would have used as login access); and with token counts an
admin wants to try (what-if). A `Scenario` rewrites each input before the engine
sees it, so every run keeps the replay's event order and the engine's rules.
"""

from collections.abc import Mapping

import msgspec

from schemas.inputs import InputEvent, Licence, LoginGroup, SessionStart, UserAccess
from schemas.internal import GroupTokens

UNLIMITED_TOKENS = 100_000_000
"""Tokens a group gets in the demand run: a billion passes, more than any history uses."""

LICENCE_MAX = 10_000_000
"""The largest licence the wire allows: what-if runs assume the licence is no limit."""

Step = InputEvent | GroupTokens
"""What the engine applies: an input as is, or a group's tokens granted without the
ledger's check (`Engine.apply_grant`)."""


class Scenario:
    """Rewrites one run's inputs. Mutable only to remember which groups it granted."""

    __slots__ = ("_granted", "tokens", "uap_holders", "unlimited")

    def __init__(self, tokens: Mapping[str, int] | None = None, unlimited: bool = False) -> None:
        if tokens and unlimited:
            raise ValueError("a run is either unlimited or has given token counts")
        for group, n in (tokens or {}).items():
            if n < 0:
                raise ValueError(f"tokens for {group!r} must not be negative")
        self.tokens: dict[str, int] = dict(tokens or {})
        """Groups whose allocation is replaced, for the whole history, by these counts."""
        self.unlimited = unlimited
        self.uap_holders: set[str] = set()
        """Users holding a user access pass after the inputs seen so far (as requested)."""
        self._granted: set[str] = set()

    @classmethod
    def actual(cls) -> "Scenario":
        """The history as it happened."""
        return cls()

    @classmethod
    def demand(cls) -> "Scenario":
        """Every group unlimited and every UAP dropped: each identified user's login
        access use, whatever the allocations were."""
        return cls(unlimited=True)

    @classmethod
    def what_if(cls, tokens: Mapping[str, int]) -> "Scenario":
        """The named groups hold the given tokens from their first event on; the licence
        is taken to be large enough."""
        return cls(tokens=tokens)

    @property
    def rewrites(self) -> bool:
        return self.unlimited or bool(self.tokens)

    def rewrite(self, event: InputEvent) -> list[Step]:
        """The steps the engine applies for `event` in this run."""
        if isinstance(event, UserAccess):
            if event.action == "assign":
                self.uap_holders.add(event.user_id)
            else:
                self.uap_holders.discard(event.user_id)
            return [] if self.unlimited else [event]
        if not self.rewrites:
            return [event]
        if isinstance(event, Licence):
            if self.unlimited:
                return []
            return [msgspec.structs.replace(event, total_tokens=LICENCE_MAX)]
        if isinstance(event, LoginGroup | SessionStart):
            tokens = self._tokens_for(event.group)
            if tokens is None:
                return [event]
            grant = self._grant(event, tokens)
            if isinstance(event, LoginGroup):
                return grant
            return [*grant, event]
        return [event]

    def _tokens_for(self, group: str) -> int | None:
        if self.unlimited:
            return UNLIMITED_TOKENS
        return self.tokens.get(group)

    def _grant(self, event: LoginGroup | SessionStart, tokens: int) -> list[Step]:
        if event.group in self._granted:
            return []
        self._granted.add(event.group)
        return [
            GroupTokens(event_id=f"scenario-{event.group}", ts=event.ts, group=event.group,
                        tokens=tokens)
        ]
