"""Timed runs in this process: wall clock beside CPU time, the collector off as
`timeit` has it, and the median of a round's runs."""

import gc
import statistics
import time
from collections.abc import Callable

import msgspec


class Timing(msgspec.Struct, frozen=True):
    """Seconds of one timed run: wall clock (`perf_counter`, the figure the goals use)
    and this process's CPU time (`process_time`), which time spent waiting for a core
    on a shared machine does not inflate."""

    wall: float
    cpu: float


def timed_runs(run: Callable[[], object], runs: int, keep_gc: bool) -> list[Timing]:
    times = []
    for _ in range(runs):
        gc.collect()
        if not keep_gc:
            gc.disable()
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            t1, c1 = time.perf_counter(), time.process_time()
            times.append(Timing(t1 - t0, c1 - c0))
        finally:
            gc.enable()
    return times


def median(times: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in times), statistics.median(t.cpu for t in times))
