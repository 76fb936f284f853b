"""Planning from the deployment's own history on the real broker (issue points 2 and 3):
the bundled 90-day history produced to the input topics, then `tokenpool export`,
`tokenpool plan` and `tokenpool estimate --from-history` read straight from them."""

import gzip
import json
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from history_broker import HISTORY, ROOT, flags, fresh, lines_of, produce_lines, produce_raw

from rules import Engine
from stream_app.commands.main import main
from stream_app.config import StreamConfig, TopicNames
from stream_app.replay import replay, state_file

SEED = ROOT / "examples" / "seed-scenario.jsonl"


@pytest.fixture(scope="module")
def bundled(broker: str) -> list[str]:
    """The bundled history on the broker: 31 917 records, one batching producer keyed by
    group. Returns the flags that name its topics."""
    config = fresh(broker)
    assert produce_lines(config, lines_of(HISTORY)) == 31_917
    return flags(config)


def replayed(path: Path, tmp: Path) -> tuple[list[str], dict]:
    """Outputs (lines) and final state of `tokenpool replay` of a history file."""
    if path.suffix == ".gz":
        plain = tmp / f"{uuid.uuid4().hex}.jsonl"
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        path = plain
    engine = Engine()
    blocks: list[bytes] = []
    replay(str(path), engine, blocks.append)
    return (b"".join(blocks).decode().splitlines(),
            msgspec.to_builtins(state_file(engine, None)))


def by_group(outputs: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for line in outputs:
        groups[json.loads(line)["value"].get("group", "")].append(line)
    return groups


def test_point3_plan_from_the_topics_prints_what_plan_of_the_file_prints(bundled, capsys):
    for extra in ([], ["--json"], ["--top", "3", "--tokens", "knowledge-workers=40"]):
        assert main(["plan", str(HISTORY), *extra]) == 0
        from_file = capsys.readouterr().out
        assert main(["plan", *bundled, *extra]) == 0
        captured = capsys.readouterr()
        assert captured.out == from_file, extra
        assert "read 31917 records of 13 partitions" in captured.err
        assert "31917 events" in captured.err


def test_point3_plan_from_the_topics_draws_the_files_report(bundled, tmp_path, capsys):
    """The same plots and HTML page, byte for byte (what-if and --top included)."""
    extra = ["--top", "3", "--tokens", "data-engineers=80"]
    from_file, from_topics = tmp_path / "file.html", tmp_path / "topics.html"
    assert main(["plan", str(HISTORY), *extra, "--out", str(from_file)]) == 0
    assert main(["plan", *bundled, *extra, "--out", str(from_topics)]) == 0
    capsys.readouterr()
    assert from_topics.read_bytes() == from_file.read_bytes()
    assert from_file.read_bytes().count(b"data:image/png;base64,") == 3


def test_point3_estimate_from_the_topics_gives_the_files_estimate(bundled, capsys):
    for extra in ([], ["--json"]):
        assert main(["estimate", "--from-history", str(HISTORY), *extra]) == 0
        from_file = capsys.readouterr().out
        assert main(["estimate", "--from-history", *bundled, *extra]) == 0
        assert capsys.readouterr().out == from_file, extra
    assert json.loads(from_file)["knowledge-workers"]["tokens"] == 50  # the last: --json


def test_point2_export_then_replay_is_the_replay_of_the_original(bundled, tmp_path, capsys):
    out = tmp_path / "history.jsonl.gz"
    assert main(["export", *bundled, "--out", str(out)]) == 0
    assert f"wrote {out}: 31917 events" in capsys.readouterr().err
    exported = gzip.decompress(out.read_bytes()).splitlines()
    # The same records, each line as the wire contract encodes it.
    assert sorted(exported) == sorted(lines_of(HISTORY))
    got, got_state = replayed(out, tmp_path)
    expected, expected_state = replayed(HISTORY, tmp_path)
    assert got_state == expected_state
    # Every output, and each group's outputs in the same order. Between groups, outputs
    # of one instant may interleave otherwise: records of one topic and instant on
    # different partitions have no order in Kafka (ties go by partition, then offset).
    assert sorted(got) == sorted(expected)
    assert by_group(got) == by_group(expected)


def test_point2_export_is_in_the_replays_merge_order(bundled, tmp_path):
    """Lowest event time first; ties in the order allocations, starts, heartbeats, ends."""
    out = tmp_path / "history.jsonl"
    assert main(["export", *bundled, "--out", str(out)]) == 0
    rank = {"allocations": 0, "session-start": 1, "session-heartbeat": 2, "session-end": 3}
    keys = [(r["value"]["ts"], rank[r["topic"]])
            for r in map(json.loads, out.read_text().splitlines())]
    assert keys == sorted(keys)


def test_point3_bad_records_are_counted_by_topic_and_reason_and_left_out(
        broker, tmp_path, capsys):
    config = fresh(broker)
    produce_lines(config, lines_of(SEED))
    produce_raw(config, [
        ("session-start", b"not json"),
        ("session-start", b'{"event_id": "x", "ts": "2026-11-01T09:00:00Z"}'),
        ("session-heartbeat", None),
        ("session-end", b'{"event_id": "y", "ts": "2026-11-01T09:00:00", "group": "g",'
                        b' "session_id": "s", "user_id": null, "reason": "logout"}'),
    ])
    out = tmp_path / "history.jsonl"
    assert main(["export", *flags(config), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    start, heartbeat, end = (config.topics.session_start, config.topics.session_heartbeat,
                             config.topics.session_end)
    assert f"left out 1 bad record(s) of {start}: invalid (first: partition " in err
    assert "Object missing required field `group`" in err
    assert f"left out 1 bad record(s) of {start}: not_json" in err
    assert f"left out 1 bad record(s) of {heartbeat}: empty" in err
    assert f"left out 1 bad record(s) of {end}: invalid" in err
    assert sorted(out.read_bytes().splitlines()) == sorted(lines_of(SEED))
    assert main(["plan", *flags(config)]) == 0  # never fatal to a plan either
    captured = capsys.readouterr()
    assert f"left out 1 bad record(s) of {heartbeat}: empty" in captured.err
    assert captured.out.startswith("history 2026-11-01")


def test_point3_missing_topics_are_named_and_no_file_is_left(broker, tmp_path, capsys):
    tag = uuid.uuid4().hex[:12]
    config = StreamConfig(broker=broker, topics=TopicNames(
        **{f: f"missing-{tag}-{f}" for f in TopicNames.__struct_fields__}))
    out = tmp_path / "history.jsonl.gz"
    assert main(["export", *flags(config), "--out", str(out)]) == 2
    assert "create the topics with `tokenpool topics create`" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["plan", *flags(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenpool plan: no topic ") and config.topics.session_start in err


def test_point2_partitions_far_ahead_wait_and_the_export_is_the_same(
        bundled, tmp_path, monkeypatch):
    """Bounded memory: with at most 100 records of a partition held in the merge, the
    partitions ahead in event time are paused until the others catch up; the export is
    byte for byte the one read with no such bound."""
    from stream_app.kafka import topic_history
    free, held = tmp_path / "free.jsonl", tmp_path / "held.jsonl"
    assert main(["export", *bundled, "--out", str(free)]) == 0
    paused = []
    monkeypatch.setattr(topic_history, "HOLD", 100)
    original = topic_history._Partitions.balance

    def balance(self, consumer):
        original(self, consumer)
        paused.append(len(self.paused))

    monkeypatch.setattr(topic_history._Partitions, "balance", balance)
    assert main(["export", *bundled, "--out", str(held)]) == 0
    assert max(paused) > 0
    assert held.read_bytes() == free.read_bytes()
