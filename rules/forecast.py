"""When a pool would run dry: the figure that pages an operator before users are denied.

The return calendar already holds everything needed. A pass consumed at `t` returns at
`t + pass_lifetime`, so the passes consumed in the last hour are exactly those due back
in the hour ending at `now + pass_lifetime`: no separate rate history to keep or persist.
"""

from collections.abc import Iterable, Sequence

HOUR = 3_600_000_000
"""One hour in microseconds, the look-back of the consumption rate."""


def consumed_since(
    calendar: Sequence[tuple[int, int]], now: int, lifetime: int, lookback: int
) -> int:
    """Passes consumed in (now - lookback, now], read off the return calendar.

    `lookback` is capped at `lifetime`: older consumptions have returned and left the
    calendar, so a longer span would undercount."""
    span = min(lookback, lifetime)
    first, last = now + lifetime - span, now + lifetime
    total = 0
    for instant, count in reversed(calendar):  # newest consumptions are at the end
        if instant <= first:
            break
        if instant <= last:
            total += count
    return total


def exhaustion_eta(
    available: int,
    calendar: Iterable[tuple[int, int]],
    now: int,
    consumed: int,
    lookback: int,
    horizon: int,
) -> int | None:
    """Microseconds from `now` until the pool reaches zero if consumption goes on at
    `consumed` passes per `lookback`, counting the returns the calendar schedules.

    0 when nothing is available now; None when there is no consumption, or the pool
    would not run dry within `horizon`."""
    if available <= 0:
        return 0
    if consumed <= 0 or lookback <= 0:
        return None
    # Between two returns the available passes fall linearly; they cross zero at
    # `stock / rate` after now unless a return lands first and tops the stock up.
    stock = available
    for instant, count in calendar:
        if instant <= now:
            continue
        if instant > now + horizon:
            break
        crossing = -(-stock * lookback // consumed)  # ceiling, in exact integers
        if crossing < instant - now:
            return crossing
        stock += count
    crossing = -(-stock * lookback // consumed)
    return crossing if crossing <= horizon else None
