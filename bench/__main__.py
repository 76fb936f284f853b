"""Every benchmark in one command: `python -m bench` (or `./run bench`).

Runs, one after the other, each with its baseline measured in the same run:

1. engine: decode + apply vs msgspec decode-only of the same bytes, from the Python
   sources and compiled as the image installs it (`bench.compiled`), and flatness in
   pool size (`bench.engine_bench`);
2. replay: `tokenpool replay` of a 1 000 000-event file end to end, both ways
   (`bench.replay_bench`);
3. memory per open session and per pass in use (`bench.state_bench`);
4. on each broker of `--brokers` (default: the embedded Tansu, then Apache Kafka 4.4 and
   3.9, one node each), each part on a broker started for it:
   changelog bytes per event, checkpoint cost and recovery time (`bench.state_bench`);
   the worker beside Faust and aiokafka, and on Kafka beside itself under
   `--guarantee exactly_once` (`bench.stream_bench`); the same traffic through 1 and 2
   workers (`bench.scaling_bench`); the last two unless `--skip-stream`.

and writes `bench/results.md`: the machine, the versions, the goal tables (one column
per broker for what runs on one), the time each part took, then each benchmark's own
tables. `--quick` is a smaller run for checking that everything works (no stream or
scaling part; its figures are not the published ones).
"""

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    compiled,
    engine_bench,
    goals,
    replay_bench,
    scaling_bench,
    state_bench,
    stream_bench,
)
from bench.harness import brokers
from bench.harness.report import machine_line

ROOT = Path(__file__).resolve().parents[1]
BROKERS = brokers.CHOICES
QUICK_BROKERS = ("tansu", "kafka")
Part = tuple[list[str], dict[str, float]]
"""A part's report lines and its figures."""


def _machine() -> list[str]:
    load = os.getloadavg()
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1e6:.1f} GB"
    return [
        machine_line(),
        f"Memory {mem}, {platform.system()} {platform.release()}; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine is shared: ratios "
        "against a baseline of the same run are the figures that count).",
    ]


def _demote(lines: list[str]) -> list[str]:
    """A sub-report's lines with its headings one level down."""
    return ["#" + line if line.startswith("#") else line for line in lines]


def _brokers(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    for b in names:
        if b not in brokers.CHOICES:
            raise argparse.ArgumentTypeError(f"unknown broker {b!r}: {', '.join(BROKERS)}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one run each, no stream or scaling part")
    ap.add_argument("--skip-stream", action="store_true",
                    help="leave out the stream and scaling parts")
    ap.add_argument("--brokers", type=_brokers,
                    help=f"the brokers of the broker parts, in order (default "
                         f"{','.join(BROKERS)}; with --quick {','.join(QUICK_BROKERS)})")
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    state_bench.add_args(ap)
    replay_bench.add_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.skip_stream = True
        args.runs = 1
        args.events = 200_000
        args.sizes = [10, 1_000]
        args.records = 100_000
        args.recovery_runs = 1
        args.paced = 20
    if args.brokers is None:
        args.brokers = list(QUICK_BROKERS if args.quick else BROKERS)
    return args


def _quietly(run: Callable[[argparse.Namespace], Part], args: argparse.Namespace) -> Part:
    """A benchmark's `run` with its progress lines kept off the console."""
    with contextlib.redirect_stdout(io.StringIO()):
        return run(args)


def _stream_parts(args: argparse.Namespace, choice: str,
                  seconds: dict[str, float]) -> Part:
    runs = ["--runs", str(min(args.runs, 3)), "--events", "100000", "--broker", choice]
    lines: list[str] = []
    figures: dict[str, float] = {}
    for name, module in (("stream", stream_bench), ("scaling", scaling_bench)):
        keep = ["--keep", str(Path(args.keep) / f"{name}-{choice}")] if args.keep else []
        t0 = time.perf_counter()
        part, more = _quietly(module.run, module.parse_args(runs + keep))
        seconds[name] = time.perf_counter() - t0
        lines += ["", *_demote(part)]
        figures |= more
    return lines, figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = ["# tokenpool benchmarks", "", f"`python -m bench{' --quick' if args.quick else ''}`"
            f", {stamp}.", "", *_machine(), ""]
    print("\n".join(head), flush=True)

    done: list[str] = []

    def save(lines: list[str]) -> None:
        """Write what is measured so far: a later failure keeps the earlier figures."""
        done.extend(lines)
        Path(args.out).write_text("\n".join(head + done), encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as d:
        # The wheel the image installs, its engine compiled with mypyc (setup.py).
        site = compiled.build(Path(d))
        eargs = engine_bench.parse_args(["--runs", str(args.runs)])
        part1, ratio, batch_ratio = engine_bench.throughput(eargs)
        print("\n".join(part1), flush=True)
        part1b, cratio, cbatch_ratio = engine_bench.compiled_throughput(eargs, site)
        print("\n".join(part1b), flush=True)
        part2, spread = engine_bench.flatness(eargs)
        print("\n".join(part2), flush=True)
        save(part1 + part1b + part2)
        rargs = argparse.Namespace(events=args.events, runs=min(args.runs, 3),
                                   seed=engine_bench.DEFAULT_SEED)
        part3, rate, crate = replay_bench.run(rargs, site)
        print("\n".join(part3), flush=True)
        save(part3)
    engine = {"compiled": cratio, "compiled_batch": cbatch_ratio, "sources": ratio,
              "sources_batch": batch_ratio, "spread": spread}

    part4, memory = state_bench.memory_part()
    save(part4)
    records, made = state_bench.recovery_records(args)
    per_broker: dict[str, dict[str, float]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for choice in args.brokers:
        spent = seconds[choice] = {}
        t0 = time.perf_counter()
        lines, figures = state_bench.broker_part(args, choice, records, made)
        spent["state"] = time.perf_counter() - t0
        if not args.skip_stream:
            more, stream = _stream_parts(args, choice, spent)
            print("\n".join(more), flush=True)
            lines += more
            figures |= stream
        per_broker[choice] = figures
        save(lines)
    del records

    summary = [
        "## Goals",
        "",
        *goals.engine_rows(engine, {"compiled": crate or 0, "sources": rate}, memory),
        "",
        "On each broker (one node on this machine; each part on a broker started for it):",
        "",
        *goals.broker_rows(per_broker),
        "",
        "Seconds each part took, per broker:",
        "",
        *goals.time_rows(seconds),
        "",
    ]
    tail = ["", f"Total bench time {time.perf_counter() - started:.0f} s.", ""]
    Path(args.out).write_text("\n".join(head + summary + done + tail), encoding="utf-8")
    print("\n".join(summary + tail))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
