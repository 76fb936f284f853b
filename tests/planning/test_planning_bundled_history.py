"""`tokenpool plan` on the bundled 90-day history reproduces the generator's ground
truth: every visit's passes are known to `stream_app.site.history_gen` (R1, R3), so each
figure of the plan is checked against a computation from the generator's own plan,
written here independently of `rules.planning`."""

import gzip
import statistics
from collections import defaultdict
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from schemas import to_micros
from stream_app.commands.main import build_parser
from stream_app.planning.result import Result, make_plan
from stream_app.site import history_gen
from stream_app.site.synthetic import to_jsonl_lines

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "examples" / "history-90d.jsonl.gz"
US = 1_000_000
SPAN = 28 * 86_400 * US
T0 = to_micros(history_gen.START)


@pytest.fixture(scope="module")
def truth() -> history_gen.History:
    return history_gen.plan()


@pytest.fixture(scope="module")
def passes(truth: history_gen.History) -> dict[str, list[int]]:
    """Every user's pass instants (µs) as the generator planned them."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for v in truth.visits:
        by_user[v.user_id].extend(T0 + s * US for s in v.pass_instants())
    return {u: sorted(ts) for u, ts in by_user.items()}


@pytest.fixture(scope="module")
def result() -> Result:
    args = build_parser().parse_args(
        ["plan", str(HISTORY), "--tokens", "knowledge-workers=40"]
    )
    return make_plan(args.file, args)


def in_use(instants: list[int], t: int) -> int:
    return sum(1 for c in instants if t - SPAN < c <= t)


def busiest(instants: list[int]) -> int:
    return max((in_use(instants, t) for t in instants), default=0)


def rate(instants: list[int]) -> Fraction:
    """Passes per 28 days over the three complete periods of the 90-day history."""
    return Fraction(sum(1 for t in instants if t < T0 + 3 * SPAN), 3)


def group_of(truth: history_gen.History) -> dict[str, str]:
    profile_group = {p.name: g.name for g in history_gen.GROUPS for p in g.profiles}
    return {u: profile_group[p] for u, p in truth.users.items()}


def test_the_bundled_history_is_the_seed_scripts_output():
    expected = b"".join(to_jsonl_lines(history_gen.events(history_gen.plan())))
    assert gzip.decompress(HISTORY.read_bytes()) == expected
    assert HISTORY.stat().st_size < 2 << 20  # a modest file to keep in the repository


def test_every_users_passes_are_the_generators(result: Result, passes):
    planned = {u.user_id: u.passes for u in result.plan.users}
    assert planned == {u: len(ts) for u, ts in passes.items()}


def test_r12_knowledge_workers_follow_the_seed_4_passes_103_people_50_tokens(result: Result):
    g = next(g for g in result.plan.groups if g.group == "knowledge-workers")
    assert (g.people, g.median, g.p90, g.mean) == (103, 4, 4, 4)
    assert g.formula.tokens == 50
    assert g.formula.exact == "49.44"
    assert g.peak_demand == 412  # 103 people x 4 passes, every day after the first 28
    assert g.tokens_by_peak == 50
    assert g.actual.exhausted == 0 and g.actual.ran_dry_at is None


def test_per_person_median_and_p90_match_the_generators_users(result: Result, truth, passes):
    groups = group_of(truth)
    holders = {u for u, p in truth.users.items() if p.endswith("executive")}
    for g in result.plan.groups:
        rates = sorted(rate(ts) for u, ts in passes.items()
                       if groups[u] == g.group and u not in holders)
        assert g.people == len(rates), g.group
        if len(rates) >= 2:
            assert g.median == statistics.median(rates), g.group
            assert g.p90 == statistics.quantiles(rates, n=10, method="inclusive")[8]
            assert g.mean == sum(rates, Fraction(0)) / len(rates)


def test_managers_use_the_profiles_5_passes_per_28_days(result: Result):
    """0.25 chance of a one-pass visit on each of 20 weekdays: 5 per 28 days. A person's
    average over 3 periods has variance 20 x 0.25 x 0.75 / 3 = 1.25; the mean of 40 people
    is within 4 standard errors (4 x sqrt(1.25 / 40) = 0.71) of 5."""
    g = next(g for g in result.plan.groups if g.group == "managers")
    assert g.people == 40
    assert abs(g.mean - 5) <= Fraction(71, 100)
    assert abs(g.median - 5) <= 1


def test_peak_passes_in_use_per_group_are_the_generators(result: Result, truth, passes):
    groups = group_of(truth)
    holders = {u for u, p in truth.users.items() if p.endswith("executive")}
    for g in result.plan.groups:
        lap = sorted(t for u, ts in passes.items()
                     if groups[u] == g.group and u not in holders for t in ts)
        assert g.peak_demand == busiest(lap), g.group


def test_r12_users_over_10_passes_in_some_28_days_are_offered_a_uap(result: Result, passes):
    holders = set(result.actual.engine.ledger.uap)
    expected = {u for u, ts in passes.items() if u not in holders and busiest(ts) > 10}
    listed = {s.user_id: s for s in result.plan.to_uap}
    assert set(listed) == expected
    assert {f"power-analyst-{i:03d}" for i in range(1, 11)} <= expected  # the profile
    for user, s in listed.items():
        assert s.saving == Fraction(busiest(passes[user]), 10) - 1


def test_r9_uap_holders_using_under_10_hours_are_offered_login_access(result: Result, passes):
    holders = set(result.actual.engine.ledger.uap)
    assert len(holders) == 12
    expected = {u for u in holders if busiest(passes.get(u, [])) < 10}
    listed = {s.user_id: s for s in result.plan.to_lap}
    assert set(listed) == expected
    assert all(u.startswith("executive-") for u in expected)
    assert len(expected) == 9  # the light executives; the busy ones keep their UAP
    for user, s in listed.items():
        assert s.saving == 1 - Fraction(busiest(passes.get(user, [])), 10)


def test_r8_data_engineers_run_dry_when_the_30th_token_of_passes_is_used(result: Result,
                                                                        truth, passes):
    groups = group_of(truth)
    lap = sorted(t for u, ts in passes.items() if groups[u] == "data-engineers" for t in ts)
    dry = next(t for t in lap if in_use(lap, t) == 300)  # 30 tokens: 300 passes
    g = next(g for g in result.plan.groups if g.group == "data-engineers")
    assert g.actual.ran_dry_at == dry
    assert g.actual.exhausted > 0
    assert g.actual.min_headroom == 0


def test_what_if_fewer_tokens_shows_denials_the_original_did_not_have(result: Result,
                                                                      truth, passes):
    assert result.what_if is not None
    groups = group_of(truth)
    lap = sorted(t for u, ts in passes.items() if groups[u] == "knowledge-workers" for t in ts)
    g = next(g for g in result.plan.groups if g.group == "knowledge-workers")
    alt = result.what_if["knowledge-workers"]
    assert (g.actual.exhausted, alt.exhausted) == (0, alt.exhausted)
    assert alt.exhausted > 0
    assert alt.capacity == 400
    assert alt.ran_dry_at == next(t for t in lap if in_use(lap, t) == 400)
    assert g.actual.min_headroom == 500 - 412
    others = [n for n in result.what_if if n != "knowledge-workers"]
    for name in others:  # groups left alone fare exactly as they did
        assert result.what_if[name] == next(
            x.actual for x in result.plan.groups if x.group == name
        )


def test_returns_calendar_holds_every_pass_still_in_use(result: Result):
    for g in result.plan.groups:
        days = result.returns[g.group]
        assert len(days) in (28, 29)
        assert sum(c for _, c in days) == result.actual.engine.pools[g.group].record.in_use
        assert days[0][0] <= result.plan.end < days[0][0] + timedelta(days=1) // timedelta(
            microseconds=1)


@pytest.fixture(scope="module")
def top_result() -> Result:
    args = build_parser().parse_args(["plan", str(HISTORY), "--top", "5"])
    return make_plan(args.file, args)


def union_seconds(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of the spans within [lo, hi), one merge of sorted spans."""
    merged: list[list[int]] = []
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in spans):
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return sum(b - a for a, b in merged)


def test_top_users_are_the_generators_busiest_of_the_last_28_days(top_result: Result, truth):
    """Point 4 (R12): per group, the 5 people with the most passes in the last 28 days of
    the history, their sessions and hours, from the generator's own visits. Groups
    whose pool never ran dry consumed exactly the planned passes; executives hold user
    access passes and consume none."""
    end = top_result.plan.end
    since = end - SPAN
    assert top_result.top is not None
    assert "executives" not in top_result.top
    for group in ("knowledge-workers", "managers", "analysts"):
        passes_of: dict[str, list[int]] = defaultdict(list)
        sessions_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for v in truth.visits:
            if v.group != group:
                continue
            passes_of[v.user_id].extend(T0 + s * US for s in v.pass_instants())
            for s in v.sessions:
                close = s.end + (0 if s.logout else history_gen.TIMEOUT)
                sessions_of[v.user_id].append((T0 + s.start * US, T0 + close * US))
        counts = {u: sum(1 for t in ts if since < t <= end) for u, ts in passes_of.items()}
        expected = sorted((-n, u) for u, n in counts.items() if n)[:5]
        got = top_result.top[group]
        assert [(u.user_id, u.passes) for u in got] == [(u, -n) for n, u in expected], group
        for u in got:
            spans = sessions_of[u.user_id]
            assert u.sessions == sum(1 for a, _ in spans if since < a <= end), u
            assert u.sessions_per_day == Fraction(u.sessions, 28)
            assert u.hours == Fraction(union_seconds(spans, since, end), 3600 * US), u
            assert u.uap_cheaper == (u.passes > 10), u
    power = [u.user_id for u in top_result.top["analysts"]]
    assert all(u.startswith("power-analyst-") for u in power)  # the UAP candidates
