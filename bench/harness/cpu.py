"""CPU seconds of processes and of the whole machine, from /proc."""

import itertools
import os
import time

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                int, f.readline().split()[1:9]
            )
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuLog:
    """CPU seconds of some processes and of the whole machine ("machine"), sampled over
    wall time, so the CPU spent between two instants known only afterwards (first input,
    done) can be interpolated."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        cpu = {k: cpu_seconds(p) for k, p in self.pids.items()}
        cpu["machine"] = machine_busy_seconds()
        self.samples.append((time.time(), cpu))

    def others(self, t0: float, t1: float) -> float:
        """Cores' worth of CPU used by processes not in `pids` (another job on the
        machine disturbs the figures when this is well above zero)."""
        return self.share("machine", t0, t1) - sum(self.share(k, t0, t1) for k in self.pids)

    def at(self, name: str, t: float) -> float:
        points = [(ts, cpu[name]) for ts, cpu in self.samples]
        if not points or t <= points[0][0]:
            return points[0][1] if points else float("nan")
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return points[-1][1]

    def share(self, name: str, t0: float, t1: float) -> float:
        """Cores' worth of CPU `name` used between t0 and t1 (1.0 = one core busy)."""
        return (self.at(name, t1) - self.at(name, t0)) / (t1 - t0)
