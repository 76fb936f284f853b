"""A session started and stopped in a Qlik log gives the same passes as the same
session written by hand as tokenpool events (R1, R3, R4)."""

from datetime import UTC, datetime

from qlik_helpers import FIXTURES, datagrams, mapping, row

from adapters.qlik.activity import Activity
from adapters.qlik.audit_log import Header, parse_header, parse_line
from adapters.qlik.udp_format import UdpCorrelator
from rules import Engine
from schemas.codec import decode_input, encode
from schemas.inputs import Licence, LoginGroup, SessionEnd, SessionHeartbeat, SessionStart
from schemas.outputs import OutputEvent, PassConsumed

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def passes(inputs: list[object]) -> list[tuple[str, str | None, str, datetime]]:
    """(group, user, reason, ts) of every pass the engine consumes for `inputs`."""
    engine, out = Engine(), []  # type: ignore[var-annotated]
    allocations: list[object] = [Licence(event_id="l", ts=T0, total_tokens=10)] + [
        LoginGroup(event_id=f"g-{g}", ts=T0, group=g, tokens=1)
        for g in ("finance", "sales", "everyone")]
    for event in allocations + sorted(inputs, key=lambda e: e.ts):  # type: ignore[attr-defined]
        engine.apply(event, out)  # type: ignore[arg-type]
    engine.advance(int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1e6), out)
    out_events: list[OutputEvent] = out
    return [(p.group, p.user_id, p.reason, p.ts) for p in out_events
            if isinstance(p, PassConsumed)]


def from_rows(rows: list[dict[str, object]]) -> list[object]:
    return [decode_input(str(r["topic"]), encode(r["value"])) for r in rows if "topic" in r]


def test_audit_log_session_gives_the_passes_of_hand_written_events() -> None:
    groups, rows = mapping(), []
    for name in ("qs-node1_AuditActivity_Proxy.txt.20261101-1050",
                 "qs-node1_AuditActivity_Proxy.txt"):
        lines = (FIXTURES / "audit" / name).read_text().splitlines()
        header = parse_header(lines[0])
        assert isinstance(header, Header)
        rows += [row(parse_line(header, line), groups) for line in lines[1:]]
    alice, bob = "CORP\\fin_alice", "CORP\\bob"
    s1 = "ab12cd34ef56ab12cd34ef56ab12cd34ef560001"
    s2 = "ab12cd34ef56ab12cd34ef56ab12cd34ef560002"
    by_hand = [
        SessionStart(event_id="h1", ts=at(9), group="finance", session_id=s1, user_id=alice),
        SessionHeartbeat(event_id="h2", ts=at(9, 25), group="finance", session_id=s1,
                         user_id=alice),
        SessionHeartbeat(event_id="h3", ts=at(9, 50), group="finance", session_id=s1,
                         user_id=alice),
        SessionEnd(event_id="h4", ts=at(10, 30), group="finance", session_id=s1,
                   user_id=alice, reason="logout"),
        SessionStart(event_id="h5", ts=at(10, 5), group="sales", session_id=s2, user_id=bob),
        SessionEnd(event_id="h6", ts=at(10, 55), group="sales", session_id=s2, user_id=bob,
                   reason="browser_closed"),
    ]
    expected = passes(by_hand)  # type: ignore[arg-type]
    assert expected == [("finance", alice, "login", at(9)), ("sales", bob, "login", at(10, 5)),
                        ("finance", alice, "renewal", at(10))]
    assert passes(from_rows(rows)) == expected


def test_udp_session_gives_the_passes_of_hand_written_events() -> None:
    groups, correlator = mapping(), UdpCorrelator()
    items = [correlator.accept(d, T0) for d in datagrams("udp_extended.txt")]
    rows = [row(i, groups) for i in items if isinstance(i, Activity)]
    got = passes(from_rows(rows))
    assert ("finance", "CORP\\fin_alice", "login", at(9)) in got
    assert ("finance", "CORP\\fin_alice", "renewal", at(10)) in got  # active past 10:00 (R3)
    assert ("everyone", None, "login", at(10)) in got  # anonymous: own pass (R6)
    assert len(got) == 5


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, 1, hh, mm, tzinfo=UTC)
