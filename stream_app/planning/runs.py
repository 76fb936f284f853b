"""Replaying one history under a scenario, collecting what the engine did.

The replay (`stream_app.replay`) decides the event order; this module only puts a
`Scenario` between it and the engine and feeds every output to a `Usage`.
"""

import contextlib
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rules import Config, Engine
from rules.planning import Usage
from rules.scenario import Scenario
from rules.top_users import Activity
from schemas import InputEvent, OutputEvent, to_micros
from schemas.internal import GroupTokens
from stream_app import replay


class _ScenarioEngine(Engine):
    """The engine, with a scenario's rewrite before each input and a usage after (and,
    when asked, each user's sessions: `rules.top_users.Activity`)."""

    __slots__ = ("activity", "first", "last", "scenario", "usage")

    def __init__(self, config: Config, scenario: Scenario, activity: Activity | None) -> None:
        super().__init__(config)
        self.scenario = scenario
        self.usage = Usage()
        self.activity = activity
        self.first: int | None = None
        self.last: int | None = None

    def apply(self, event: InputEvent, out: list[OutputEvent]) -> None:
        t = to_micros(event.ts)
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t
        n = len(out)
        if self.activity is not None:
            self.activity.observe_input(event)
        for step in self.scenario.rewrite(event):
            if isinstance(step, GroupTokens):
                self.apply_grant(step, out)
            else:
                super().apply(step, out)
        self.observe(out[n:])

    def observe(self, outputs: list[OutputEvent]) -> None:
        observe = self.usage.observe
        for o in outputs:
            observe(o)
        if self.activity is not None:
            for o in outputs:
                self.activity.observe_output(o)

    def apply_all(self, events: Iterable[tuple[int, InputEvent]], out: list[OutputEvent]) -> None:
        for _, event in events:  # every input through the rewrite above
            self.apply(event, out)


@dataclass
class Run:
    engine: Engine
    scenario: Scenario
    usage: Usage
    start: int
    end: int
    errors: list[tuple[int, str]]
    applied: int
    activity: Activity | None

    def capacities(self) -> dict[str, int]:
        return {name: g.capacity for name, g in self.engine.summary().items()}

    def returns_calendars(self) -> dict[str, list[tuple[int, int]]]:
        return {name: pool.returns_calendar() for name, pool in sorted(self.engine.pools.items())}


class EmptyHistory(ValueError):
    """The history holds no valid input event: there is nothing to plan from."""


def run(path: str, scenario: Scenario, config: Config,
        activity: Activity | None = None) -> Run:
    """Replay `path` (plain JSON Lines) under `scenario`, following users' sessions
    into `activity` if given."""
    engine = _ScenarioEngine(config, scenario, activity)
    report = replay.replay(path, engine, lambda line: None)
    if engine.first is None or engine.last is None:
        raise EmptyHistory(f"{path}: no valid input event to plan from")
    # Bring every group to the history's end: returns and timeouts due by then fire,
    # so the pools' figures and return calendars are all as of one instant.
    out: list[OutputEvent] = []
    engine.advance(engine.last, out)
    engine.observe(out)
    return Run(engine, scenario, engine.usage, engine.first, engine.last, report.errors,
               report.applied, activity)


@contextlib.contextmanager
def plain(path: str) -> Iterator[str]:
    """`path` itself, or for a `.gz` history a decompressed temporary copy (the replay
    reads its file twice: once to count records per topic, once to apply them)."""
    if not path.endswith(".gz"):
        yield path
        return
    fd, tmp = tempfile.mkstemp(suffix=".jsonl", prefix="tokenpool-plan-")
    try:
        with os.fdopen(fd, "wb") as dst, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield tmp
    finally:
        os.unlink(tmp)
