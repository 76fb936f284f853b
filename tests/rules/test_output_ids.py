"""Every outcome is a pure function of the inputs: same input, same outputs, ids included."""

import os
import subprocess
import sys
from pathlib import Path

from builders import Scenario

from schemas import encode


def busy_day() -> Scenario:
    """Every kind of output: logins, renewals, returns, denials, a rejection."""
    s = Scenario.with_pool(tokens=1, licence=2).group("support", 1)
    s.at(1, 9, 0).start("laptop", user="alice").start("anon-1")
    s.keep_alive("laptop", minutes=70)
    for n in range(9):
        s.start(f"anon-x{n}")
    s.start("bob", user="bob")  # pool exhausted
    s.start("m1", user="carol", group="marketing")  # no allocation
    s.group("support", 5)  # rejected
    s.advance(40, 0, 0)
    return s


def test_ids_same_input_gives_same_outputs_ids_included():
    first = busy_day()
    again = first.run()

    assert again == first.outputs
    assert [encode(o) for o in again] == [encode(o) for o in first.outputs]


def test_ids_are_unique_among_outputs_of_different_meaning():
    ids = [o.event_id for o in busy_day().outputs]

    assert len(ids) > 10
    assert len(set(ids)) == len(ids)


def test_ids_of_session_outcomes_depend_on_meaning_not_on_input_event_ids():
    def day(prefix: str) -> list[str]:
        s = Scenario.with_pool(tokens=1, id_prefix=prefix)  # different input event ids
        s.at(1, 9, 0).start("laptop", user="alice").start("anon-1")
        s.start("m1", user="carol", group="marketing")
        s.advance(30, 0, 0)
        return [o.event_id for o in s.outputs]

    assert day("retry-a") == day("retry-b")


def test_ids_differ_by_group_and_instant():
    s = Scenario.with_pool(tokens=1).group("support", 1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.start("laptop", user="alice", group="support")
    s.at(1, 9, 0, 0, 1).start("anon-1")
    s.at(1, 9, 0, 0, 2).start("anon-1", group="support")

    ids = [c.event_id for c in s.consumed()]
    assert len(set(ids)) == 4


def test_ids_survive_snapshot_and_restore():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.advance(40, 0, 0)

    t = Scenario.with_pool(tokens=1)
    t.at(1, 9, 0).start("anon-1")
    t.engine = type(t.engine).restore(t.engine.snapshot())
    t.advance(40, 0, 0)

    assert [o.event_id for o in t.outputs] == [o.event_id for o in s.outputs]


def test_ids_and_outputs_do_not_depend_on_the_process_hash_seed():
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_output_ids import busy_day\n"
        "from schemas import encode\n"
        "sys.stdout.write(b'\\n'.join(encode(o) for o in busy_day().outputs).decode())\n"
    )

    def outputs(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True,
            check=True, timeout=60,
        ).stdout

    first = outputs("1")
    assert first and first == outputs("2")
