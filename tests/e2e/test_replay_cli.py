"""`tokenpool replay` end to end: the seed scenario, malformed lines, --until, state,
checkpoints, and event-time order across topics (SPEC §3, §4)."""

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules import Engine
from schemas import to_micros
from stream_app.commands.main import main

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-scenario.jsonl"
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def day(n: int, hh: int = 0, mm: int = 0) -> str:
    return (DAY0 + timedelta(days=n, hours=hh, minutes=mm)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_replay(tmp_path: Path, src: Path, *extra: str) -> tuple[int, list[dict], dict]:
    out, state = tmp_path / "out.jsonl", tmp_path / "state.json"
    code = main(["replay", str(src), "--out", str(out), "--state", str(state), *extra])
    outputs = [json.loads(line) for line in out.read_text().splitlines()]
    return code, outputs, json.loads(state.read_text())


def test_seed_scenario_day0_to_day54_consumes_4_and_returns_all(tmp_path: Path) -> None:
    code, outputs, state = run_replay(tmp_path, SEED, "--until", day(54))
    assert code == 0
    consumed = [o["value"] for o in outputs if o["topic"] == "pass-consumed"]
    returned = [o["value"] for o in outputs if o["topic"] == "pass-returned"]
    assert [(c["ts"], c["reason"]) for c in consumed] == [
        (day(1, 9), "login"),  # Day 1: log in
        (day(1, 10), "renewal"),  # Day 1: still active after the first hour (R3)
        (day(15, 10), "login"),  # Day 15: two devices, one pass (R5)
        (day(25, 9), "login"),  # Day 25: re-login inside the hour costs nothing (R2)
    ]
    # Returns 28 days later (R7): day 29 twice, day 43, day 53 (the seed's "Day 54"
    # is 25 + 28 = 53 in exact arithmetic).
    assert [(r["ts"], r["count"]) for r in returned] == [
        (day(29, 9), 1),
        (day(29, 10), 1),
        (day(43, 10), 1),
        (day(53, 9), 1),
    ]
    assert returned[-1]["available"] == returned[-1]["capacity"] == 10
    assert state == {
        "as_of": day(54),
        "groups": {"analysts": {"capacity": 10, "available": 10, "in_use": 0, "open_sessions": 0}},
    }


def test_without_until_the_replay_stops_at_the_last_event(tmp_path: Path) -> None:
    _, outputs, state = run_replay(tmp_path, SEED)
    assert not [o for o in outputs if o["topic"] == "pass-returned"]
    assert state["as_of"] == day(25, 9, 40)
    assert state["groups"]["analysts"]["in_use"] == 4


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = SEED.read_text().splitlines()
    lines.insert(3, "{not json")
    lines.insert(5, json.dumps({"topic": "session-start", "value": {"event_id": "x"}}))
    lines.insert(7, json.dumps({"topic": "nope", "value": {}}))
    lines.insert(9, '{"topic": "session-start", "value": ' + "[" * 100_000 + "]" * 100_000 + "}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, outputs, _ = run_replay(tmp_path, bad, "--until", day(54))
    assert code == 0
    err = capsys.readouterr().err
    assert f"{bad}:4: skipped: not a replay record" in err
    assert f"{bad}:6: skipped: invalid session-start value" in err
    assert f"{bad}:8: skipped: unknown topic 'nope'" in err
    assert f"{bad}:10: skipped: " in err  # nested deeper than any stack: no crash
    # every good event around them is still applied
    assert sum(o["topic"] == "pass-consumed" for o in outputs) == 4
    assert main(["replay", str(bad), "--out", str(tmp_path / "o"), "--strict"]) == 1


def test_topic_by_topic_backfill_gives_the_interleaved_result(tmp_path: Path) -> None:
    """SPEC §3: records merge across topics by event time, so a file written one topic
    after another replays exactly like the time-ordered one."""
    records = [json.loads(line) for line in SEED.read_text().splitlines()]
    order = ["allocations", "session-start", "session-heartbeat", "session-end"]
    by_topic = sorted(records, key=lambda r: order.index(r["topic"]))
    backfill = tmp_path / "backfill.jsonl"
    backfill.write_text("".join(json.dumps(r) + "\n" for r in by_topic))
    _, interleaved, s1 = run_replay(tmp_path, SEED, "--until", day(54))
    _, grouped, s2 = run_replay(tmp_path, backfill, "--until", day(54))
    assert grouped == interleaved and s1 == s2


def test_checkpoint_and_resume_equal_one_run(tmp_path: Path) -> None:
    """Split a replay at a random line, save the engine state, resume: same outputs."""
    lines = SEED.read_text().splitlines()
    rng = random.Random(7)
    for _ in range(5):
        cut = rng.randrange(1, len(lines))
        first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        first.write_text("\n".join(lines[:cut]) + "\n")
        second.write_text("\n".join(lines[cut:]) + "\n")
        ckpt = tmp_path / "engine.state"
        out1, out2, whole = tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"
        assert main(["replay", str(first), "--out", str(out1), "--checkpoint", str(ckpt)]) == 0
        assert main(["replay", str(second), "--out", str(out2), "--resume", str(ckpt),
                     "--until", day(54)]) == 0
        assert main(["replay", str(SEED), "--out", str(whole), "--until", day(54)]) == 0
        assert out1.read_text() + out2.read_text() == whole.read_text()


def test_console_script_runs_and_prints_a_summary_per_group(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", str(SEED), "--until", day(54)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert proc.stdout.count("pass-consumed") == 4
    assert "analysts" in proc.stderr and "replayed 27 events" in proc.stderr


def test_estimate_cli_seed_example_is_50_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    """R12: 103 people x 4 passes x 120 % / 10 = 49.44 -> 50 tokens."""
    assert main(["estimate", "--people", "103", "--passes", "4"]) == 0
    assert "-> 50 tokens" in capsys.readouterr().out
    assert main(["estimate", "--people", "103", "--passes", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 50
    assert main(["estimate", "--people", "2", "--passes", "12", "--buffer", "0"]) == 0
    assert "user access passes" in capsys.readouterr().out


@pytest.mark.parametrize("chunk", [1, 97, 1 << 20])
def test_chunked_reading_gives_the_line_by_line_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The file is decoded a chunk of lines at a time. Whatever the chunk size (a byte,
    a few lines, the whole file), every good line is applied once in merge order, blank
    lines are skipped, and each malformed line is reported with its own line number,
    also when it sits at a chunk boundary or ends the file without a newline."""
    from stream_app import replay
    from stream_app.replay import lines as replay_lines

    lines = SEED.read_text().splitlines()
    lines.insert(3, "{not json")
    lines.insert(4, "")
    lines.insert(5, "   ")
    lines.insert(6, json.dumps({"topic": "session-start", "value": {"event_id": "x"}}))
    lines.insert(9, json.dumps({"topic": "nope", "value": {}}))
    lines.insert(10, '{"topic": "allocations", "value": {}} {"topic": "x", "value": 1}')
    lines.append("{truncated")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\r\n".join(lines[:8]) + "\n" + "\n".join(lines[8:]))  # no final newline
    monkeypatch.setattr(replay_lines, "CHUNK", chunk)
    engine = Engine()
    emitted: list[bytes] = []
    report = replay.replay(str(bad), engine, emitted.append, until=to_micros(DAY0 + timedelta(54)))
    assert [(n, reason.split(":")[0]) for n, reason in report.errors] == [
        (4, "not a replay record"),
        (7, "invalid session-start value"),
        (10, "unknown topic 'nope'"),
        (11, "not a replay record"),
        (len(lines), "not a replay record"),
    ]
    assert report.lines == len(lines) - 2  # the blank ones
    assert report.applied == 27
    expected = tmp_path / "expected.jsonl"
    assert main(["replay", str(SEED), "--out", str(expected), "--until", day(54)]) == 0
    assert b"".join(emitted) == expected.read_bytes()
