"""Following audit logs: partial lines, rotation, truncation, and restarts from a saved
position, so every line is read exactly once (real files, real renames)."""

import os
from pathlib import Path

import msgspec
from qlik_helpers import FIXTURES

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.keepalive import KeepAlive
from adapters.qlik.log_follower import Line, LogCursor, PositionStore

OLD = (FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt.20261101-1050").read_bytes()
NEW = (FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt").read_bytes()
NAME = "qs-node1_AuditActivity_Proxy.txt"


def data_lines(content: bytes) -> list[str]:
    """The lines after the header, as the cursor should hand them over (no CR/LF)."""
    return [line.decode().rstrip("\r") for line in content.split(b"\n")[1:] if line]


def texts(lines: list[Line]) -> list[str]:
    """What each line handed over was, by its text: header lines are left out."""
    out = []
    for line in lines:
        item = line.item
        if isinstance(item, Rejected) and item.reason == "header":
            continue
        out.append(item.reason if isinstance(item, Rejected) else item.ref)
    return out


def drain(cursor: LogCursor, max_lines: int = 5000) -> list[Line]:
    got: list[Line] = []
    while batch := cursor.read(max_lines):
        got += batch
    return got


def expected_texts(content: bytes) -> list[str]:
    """Data lines, except that a malformed one is known by its reason (see fixtures)."""
    want = []
    for line in data_lines(content):
        if "broken line" in line:
            want.append("5 columns, the header has 20")
        elif "\t20261101T101500.000\t" in line:
            want.append("Timestamp '20261101T101500.000' is not YYYYMMDDThhmmss.fffK with an "
                        "offset")
        elif "\t0\tpk" in line or "\tsa_repository\t" in line:
            want.append("proxy session id 0: an internal call")
        elif "Result=1" in line:
            want.append("session start failed (Result=1: Access denied)")
        else:
            want.append(line)
    return want


def test_only_complete_lines_are_taken(tmp_path: Path) -> None:
    path = tmp_path / NAME
    head, rest = OLD.split(b"\n", 2)[:2], OLD.split(b"\n", 2)[2]
    path.write_bytes(b"\n".join(head) + b"\n" + rest[:40])  # header, line 1, half of line 2
    cursor = LogCursor(path, None)
    first = drain(cursor)
    assert texts(first) == expected_texts(OLD)[:1]
    with open(path, "ab") as f:
        f.write(rest[40:])
    assert texts(first + drain(cursor)) == expected_texts(OLD)


def test_rotation_while_following_reads_the_old_file_to_its_end_then_the_new(
        tmp_path: Path) -> None:
    path = tmp_path / NAME
    half = OLD.index(b"\n", len(OLD) // 2) + 1
    path.write_bytes(OLD[:half])
    cursor = LogCursor(path, None)
    got = drain(cursor)
    with open(path, "ab") as writer:  # the proxy still writes to the file it has open
        os.rename(path, tmp_path / (NAME + ".1"))
        writer.write(OLD[half:])
    path.write_bytes(NEW)
    got += drain(cursor)
    assert texts(got) == expected_texts(OLD) + expected_texts(NEW)
    assert drain(cursor) == []


def test_restart_from_saved_position_neither_resends_nor_skips(tmp_path: Path) -> None:
    path, store_path = tmp_path / NAME, tmp_path / "positions.json"
    path.write_bytes(OLD)
    store = PositionStore(store_path)
    cursor = LogCursor(path, None)
    got = cursor.read(max_lines=3)  # header + two lines, then "stopped"
    position = cursor.position()
    assert position is not None
    store.positions[str(path)] = position
    store.save()
    cursor.close()
    restarted = LogCursor(path, PositionStore(store_path).positions[str(path)])
    got += drain(restarted)
    assert texts(got) == expected_texts(OLD)


def test_rotation_while_stopped_finishes_the_old_file_found_by_inode(tmp_path: Path) -> None:
    path, archive = tmp_path / NAME, tmp_path / "ArchivedLogs"
    archive.mkdir()
    path.write_bytes(OLD)
    cursor = LogCursor(path, None)
    got = cursor.read(max_lines=4)
    saved = cursor.position()
    cursor.close()
    os.rename(path, archive / (NAME + ".20261101-1050"))
    path.write_bytes(NEW)
    restarted = LogCursor(path, saved, archive_dirs=[archive])
    got += drain(restarted)
    assert texts(got) == expected_texts(OLD) + expected_texts(NEW)


def test_rotated_file_that_cannot_be_found_is_reported_and_the_new_file_read(
        tmp_path: Path, caplog: object) -> None:
    path = tmp_path / NAME
    path.write_bytes(OLD)
    cursor = LogCursor(path, None)
    cursor.read(max_lines=2)
    saved = cursor.position()
    cursor.close()
    os.remove(path)
    path.write_bytes(NEW)
    restarted = LogCursor(path, saved)
    assert texts(drain(restarted)) == expected_texts(NEW)
    assert "are lost" in caplog.text  # type: ignore[attr-defined]


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(OLD)
    cursor = LogCursor(path, None)
    drain(cursor)
    with open(path, "r+b") as f:  # copytruncate-style rotation: same inode, emptied
        f.truncate(0)
        f.write(NEW)
    assert texts(drain(cursor)) == expected_texts(NEW)


def test_positions_saved_with_the_keepalive_state_and_the_older_layout_still_read(
        tmp_path: Path) -> None:
    path, store_path = tmp_path / NAME, tmp_path / "positions.json"
    path.write_bytes(OLD)
    cursor, keeper = LogCursor(path, None), KeepAlive()
    for line in cursor.read(max_lines=4):  # header, start, internal call, open connection
        if isinstance(line.item, Activity):
            keeper.accept(line.item, line.item.ts)
    assert keeper.open_connections() == 1
    position = cursor.position()
    assert position is not None
    older = {str(path): msgspec.to_builtins(position)}  # positions only, as once saved
    store_path.write_bytes(msgspec.json.encode(older))
    assert PositionStore(store_path).positions == {str(path): position}
    store = PositionStore(store_path)
    store.keepalive = keeper.state
    store.save()
    reread = PositionStore(store_path)
    assert (reread.positions, reread.keepalive) == ({str(path): position}, store.keepalive)
