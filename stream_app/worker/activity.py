"""Whether an agent is busy, and when it last received an input: the catch-up of inputs
that do not arrive runs only while an agent is idle (a backfill's records may still wait
their turn), and the ledger marks only while the ledger is."""

import time
from dataclasses import dataclass


@dataclass
class Activity:
    """One agent's: set while it handles an input, stamped when one arrives."""

    busy: bool = False
    """An input is being handled (it may wait on the broker for long)."""
    received_at: float = 0.0
    """When (monotonic) the agent last received an input (ticks and ledger marks,
    which never stop, left out)."""

    def received(self) -> None:
        self.received_at = time.monotonic()

    def idle_for(self, seconds: float, now: float) -> bool:
        """Not busy, and nothing received for `seconds` up to `now` (monotonic)."""
        return not self.busy and now - self.received_at > seconds
