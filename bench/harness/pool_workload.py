"""The pool workload of the flatness benchmark and the state benchmark: a pre-fill
that brings a pool to ~90 % in use, then a fixed mix of logins, heartbeats, ends and
returns, the same at every pool size, so what is measured is the pool's size alone."""

from typing import Any

from schemas import (
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    from_micros,
)

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LIFETIME = 28 * DAY
"""The default pass lifetime (R7); the flatness mix aligns its returns with it."""


MIX_USERS = 6
"""Identified users in the mix: each logs in once (one pass) and works in its window."""
MIX_ANONYMOUS = 2
"""Anonymous sessions in the mix: one pass each."""
MIX_CONSUMED = MIX_USERS + MIX_ANONYMOUS
LANES = 3
"""Devices an identified user keeps busy at once (R5 allows 5)."""
BEATS = 8
"""Heartbeats per identified session, so ~80 % of the mix is heartbeats, as on a site."""
ACTIVE = 55 * MINUTE
"""Each holder's activity ends inside its 60-minute window: no renewal in the mix."""


def _ev(kind: type, t: int, group: str, sid: str, uid: str | None, **extra: Any) -> Any:
    return kind(
        event_id=f"{sid}@{t}", ts=from_micros(t), group=group, session_id=sid, user_id=uid, **extra
    )


def pool_mix(group: str, m0: int, per_consumer: int) -> list[InputEvent]:
    """The fixed mix at `m0` (µs): consumer k logs in at `m0 + k·5 min`; identified
    users then cycle sessions on 3 devices (start, heartbeats, end; now and then a
    redelivered end or start, which R13 ignores), anonymous sessions heartbeat, and
    everyone is gone before their window ends."""
    items: list[tuple[int, int, InputEvent]] = []

    def add(t: int, ev: InputEvent) -> None:
        items.append((t, len(items), ev))

    for k in range(MIX_CONSUMED):
        s = m0 + k * 5 * MINUTE
        if k < MIX_USERS:
            uid = f"mix-u{k}"
            step = ACTIVE * LANES // per_consumer
            for lane in range(LANES):
                t, j = s + lane * SECOND, 0
                while t + (BEATS + 1) * step <= s + ACTIVE:
                    sid = f"{uid}-l{lane}-{j}"
                    add(t, _ev(SessionStart, t, group, sid, uid, device_id=f"{uid}-d{lane}"))
                    for b in range(1, BEATS + 1):
                        add(t + b * step, _ev(SessionHeartbeat, t + b * step, group, sid, uid))
                    t += (BEATS + 1) * step
                    reason = "logout" if j % 2 else "browser_closed"
                    add(t, _ev(SessionEnd, t, group, sid, uid, reason=reason))
                    if j % 10 == 9:  # redeliveries: change nothing (R13)
                        add(t + 1, _ev(SessionEnd, t + 1, group, sid, uid, reason=reason))
                        add(t + 2, _ev(SessionStart, t + 2, group, sid, uid))
                    t += step
                    j += 1
        else:
            sid = f"mix-a{k}"
            step = ACTIVE // per_consumer
            add(s, _ev(SessionStart, s, group, sid, None))
            t = s + step
            while t < s + ACTIVE:
                add(t, _ev(SessionHeartbeat, t, group, sid, None))
                t += step
            add(s + ACTIVE, _ev(SessionEnd, s + ACTIVE, group, sid, None, reason="logout"))
    items.sort(key=lambda item: (item[0], item[1]))
    return [ev for _, _, ev in items]


def pool_prefill(group: str, capacity: int, m0: int) -> list[InputEvent]:
    """Allocations, then ~90 % of `capacity` consumed by anonymous sessions (no
    heartbeats: they time out). The first `MIX_CONSUMED` are consumed exactly one
    lifetime before the mix's logins, so they return as the mix consumes; the rest
    return after the mix. None of their timers (timeout, window end, forgetting the
    session 24 h after it closed) falls inside the mix: starts stop 2 h before it and
    skip the hours whose sessions would be forgotten during it, so at the mix sessions
    closed in the last ~20 h are still remembered, as on a live site."""
    fill = round(capacity * 0.9)
    if fill < MIX_CONSUMED:
        raise ValueError(f"capacity {capacity} is too small for the mix")
    tokens = -(-capacity // 10)
    t_alloc = m0 - LIFETIME - DAY
    events: list[InputEvent] = [
        Licence(event_id="bench-licence", ts=from_micros(t_alloc), total_tokens=2 * tokens),
        LoginGroup(event_id="bench-group", ts=from_micros(t_alloc), group=group, tokens=tokens),
    ]
    instants = [m0 - LIFETIME + k * 5 * MINUTE for k in range(MIX_CONSUMED)]
    rest = fill - MIX_CONSUMED
    first, gap_start, gap_end, last = m0 - 26 * DAY, m0 - 25 * HOUR, m0 - 22 * HOUR, m0 - 2 * HOUR
    span = (gap_start - first) + (last - gap_end)
    for i in range(rest):
        x = i * span // max(rest, 1)
        instants.append(first + x if first + x < gap_start else gap_end + x - (gap_start - first))
    for i, t in enumerate(instants):
        events.append(_ev(SessionStart, t, group, f"fill-{i}", None))
    # An end of no session just before the mix moves the group's clock there, so the
    # timeouts and window ends of the last fills (as many as the pool is large) fire in
    # the pre-fill, not at the mix's first event.
    events.append(_ev(SessionEnd, m0 - MINUTE, group, "prefill-clock", None, reason="logout"))
    return events
