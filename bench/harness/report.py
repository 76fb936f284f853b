"""What every benchmark report starts with: the machine, the versions, the broker."""

import contextlib
import os
import platform
from importlib.metadata import version

import msgspec

from bench.harness import brokers


def machine_line(runs: int | None = None, broker: str | None = None) -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = (
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}, {cpu}), "
        f"Python {platform.python_version()}, faust-streaming {version('faust-streaming')}, "
        f"aiokafka {version('aiokafka')}, msgspec {msgspec.__version__}"
    )
    if broker is not None:
        text += f"; broker: {brokers.describe(broker)}"
    if runs is not None:
        text += f"; median of {runs} runs"
    return text + "."
