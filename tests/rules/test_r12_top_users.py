"""R12 per person: `rules.top_users`, who consumed the most passes in the last 28 days,
with sessions per day and hours of use as the engine opened and closed the sessions
(R4, R5, R8, R13), and whether a user access pass would be cheaper (more than 10
passes per 28 days)."""

from datetime import timedelta
from fractions import Fraction

from builders import DAY_ONE, Scenario, Tick

from rules import Engine
from rules.planning import Usage
from rules.top_users import Activity, TopUser, open_time, top_users
from schemas import OutputEvent, to_micros

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
LIFETIME = 28 * 24 * HOUR


def top(s: Scenario, n: int = 5, end: int | None = None) -> dict[str, tuple[TopUser, ...]]:
    """`s`'s script replayed with an `Activity` beside the engine, as `tokenpool plan
    --top` runs it; the history ends at its last input (or `end`, a tick there)."""
    config = s.config
    activity = Activity(config.inactivity_timeout // timedelta(microseconds=1),
                        config.dedupe_horizon // timedelta(microseconds=1), LIFETIME)
    usage = Usage()
    engine = Engine(config)
    script = list(s.script)
    if end is not None:
        script.append(Tick(end))
    out: list[OutputEvent] = []
    last = to_micros(DAY_ONE)
    for item in script:
        before = len(out)
        if isinstance(item, Tick):
            engine.advance(item.ts, out)
            last = max(last, item.ts)
        else:
            activity.observe_input(item)
            engine.apply(item, out)
            last = max(last, to_micros(item.ts))
        for o in out[before:]:
            usage.observe(o)
            activity.observe_output(o)
    return top_users(usage, activity, to_micros(DAY_ONE), last, LIFETIME, n)


def row(rows: dict[str, tuple[TopUser, ...]], user: str) -> TopUser:
    return next(u for users in rows.values() for u in users if u.user_id == user)


def visit(s: Scenario, day: int, user: str, minutes: int, hour: int = 9) -> None:
    """One session of `minutes` (under an hour: one pass) from `hour`:00, a heartbeat
    every 10 minutes, logged out at the end. Calls must come in time order."""
    sid = f"{user}-{day}-{hour}"
    s.at(day, hour, 0).start(sid, user=user)
    for minute in range(10, minutes, 10):
        s.at(day, hour, minute).heartbeat(sid)
    s.at(day, hour, minutes).end(sid)


def test_r5_two_devices_at_once_are_two_sessions_and_their_hours_count_once():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 10).start("ipad", user="alice")
    s.at(1, 9, 25).end("laptop")
    s.at(1, 9, 35).end("ipad")
    alice = row(top(s), "alice")
    assert (alice.passes, alice.sessions) == (1, 2)
    assert alice.hours == Fraction(35, 60)


def test_r4_a_session_left_open_counts_until_its_inactivity_timeout():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("s1", user="alice")
    s.at(1, 9, 20).heartbeat("s1")  # then nothing: closed at 9:50 (R4)
    alice = row(top(s, end=to_micros(DAY_ONE + timedelta(days=1))), "alice")
    assert (alice.passes, alice.sessions, alice.hours) == (1, 1, Fraction(50, 60))


def test_r8_a_denied_start_is_no_session_and_no_hour():
    s = Scenario.with_pool(tokens=1)  # 10 passes
    visit(s, 1, "bob", 30)
    for i in range(9):
        visit(s, 1, f"user-{i}", 30, hour=10 + i)
    s.at(2, 10, 0).start("bob-again", user="bob")  # no pass left (R8)
    assert [d.reason for d in s.denied()] == ["pool_exhausted"]
    bob = row(top(s, n=20), "bob")
    assert (bob.passes, bob.sessions, bob.hours) == (1, 1, Fraction(1, 2))


def test_r8_a_discontinued_session_closes_when_its_renewal_is_denied():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 8, 0).start("alice-1", user="alice")
    for i in range(9):
        s.at(1, 8, 1 + i).start(f"user-{i}", user=f"user-{i}")
    s.at(1, 8, 0).keep_alive("alice-1", minutes=90)  # renewal due at 9:00: none left
    assert [d.renewal for d in s.denied()] == [True]
    alice = row(top(s, n=20), "alice")
    assert (alice.passes, alice.sessions, alice.hours) == (1, 1, Fraction(1))


def test_r13_a_closed_session_started_again_is_no_new_session():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("s1", user="alice")
    s.at(1, 9, 10).end("s1")
    s.at(1, 9, 20).start("s1", user="alice")  # a redelivered start: ignored (R13)
    alice = row(top(s), "alice")
    assert (alice.sessions, alice.hours) == (1, Fraction(10, 60))


def test_r12_more_than_10_passes_in_28_days_makes_a_user_access_pass_cheaper():
    s = Scenario.with_pool(tokens=5)
    for day in range(1, 12):
        visit(s, day, "carol", 30)
        if day <= 10:
            visit(s, day, "dave", 20, hour=11)
    rows = top(s, end=to_micros(DAY_ONE + timedelta(days=28)))  # a whole 28 days
    carol, dave = row(rows, "carol"), row(rows, "dave")
    assert (carol.passes, carol.uap_cheaper) == (11, True)
    assert (dave.passes, dave.uap_cheaper) == (10, False)
    assert carol.sessions_per_day == Fraction(11, 28)


def test_only_the_last_28_days_count():
    s = Scenario.with_pool(tokens=1)
    visit(s, 1, "eve", 30)
    visit(s, 10, "eve", 30)
    visit(s, 40, "eve", 45)
    eve = row(top(s), "eve")  # the window: day 12 09:45 to day 40 09:45
    assert (eve.passes, eve.sessions, eve.hours) == (1, 1, Fraction(3, 4))
    assert eve.sessions_per_day == Fraction(1, 28)


def test_a_history_shorter_than_28_days_is_scaled_up_to_28():
    s = Scenario.with_pool(tokens=5)
    for day in range(1, 7):
        visit(s, day, "frank", 30)  # 6 passes in 5 days and 30 minutes
    frank = row(top(s, end=to_micros(DAY_ONE + timedelta(days=14))), "frank")
    assert frank.passes == 6
    assert frank.per_lifetime == 12  # 6 passes in 14 days: 12 per 28 days
    assert frank.uap_cheaper


def test_top_n_is_most_passes_first_then_by_user_and_leaves_anonymous_out():
    s = Scenario.with_pool(tokens=5)
    for day in range(1, 6):
        for hour, (user, days) in enumerate((("ann", 3), ("bea", 5), ("cid", 3), ("dan", 1))):
            if day <= days:
                visit(s, day, user, 30, hour=9 + hour)
        if day == 2:
            for i in range(8):
                s.at(2, 14, i).start(f"anon-{i}")  # anonymous (R6): a pass each
    rows = top(s, n=3)
    assert [(u.user_id, u.passes) for u in rows["sales"]] == [("bea", 5), ("ann", 3),
                                                             ("cid", 3)]


def test_open_time_counts_overlaps_once_and_clips_to_the_window():
    spans = [(0, 10), (5, 20), (30, 40), (35, 38)]
    assert open_time(spans, 0, 100) == 30
    assert open_time(spans, 8, 36) == 12 + 6
    assert open_time([], 0, 10) == 0
