"""One typed configuration object for every rule's constants."""

from datetime import timedelta

import msgspec

from schemas.timestamps import micros


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The site's licensing constants; defaults are Qlik Sense's."""

    window: timedelta = timedelta(minutes=60)
    """Access a consumed pass buys its holder (R1, R3)."""
    pass_lifetime: timedelta = timedelta(days=28)
    """How long a consumed pass stays in use before it returns (R7)."""
    inactivity_timeout: timedelta = timedelta(minutes=30)
    """A session with no activity for this long is closed (R4)."""
    max_devices: int = 5
    """Open sessions one identified user may hold at once (R5)."""
    max_clock_skew: timedelta = timedelta(seconds=120)
    """How far ahead of wall clock an event may be stamped in live mode (SPEC §3)."""
    dedupe_horizon: timedelta = timedelta(hours=24)
    """How long a closed session id is remembered, so repeats change nothing (R13)."""
    uap_quarantine: timedelta = timedelta(days=7)
    """A removed user access pass used this recently is quarantined (R9)."""
    passes_per_token: int = 10

    def __post_init__(self) -> None:
        for name in ("window", "pass_lifetime", "inactivity_timeout", "dedupe_horizon"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.max_devices < 1:
            raise ValueError("max_devices must be at least 1")
        if self.passes_per_token < 1:
            raise ValueError("passes_per_token must be at least 1")


class Durations(msgspec.Struct, frozen=True):
    """The config's durations in integer microseconds, as the engine computes."""

    window: int
    pass_lifetime: int
    inactivity_timeout: int
    dedupe_horizon: int
    uap_quarantine: int

    @classmethod
    def of(cls, config: Config) -> "Durations":
        return cls(
            window=micros(config.window),
            pass_lifetime=micros(config.pass_lifetime),
            inactivity_timeout=micros(config.inactivity_timeout),
            dedupe_horizon=micros(config.dedupe_horizon),
            uap_quarantine=micros(config.uap_quarantine),
        )
