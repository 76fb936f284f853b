"""Every benchmark in one command: `python -m bench` (or `./run bench`).

Runs, one after the other, each with its baseline measured in the same run:

1. engine: decode + apply vs msgspec decode-only of the same bytes, from the Python
   sources and compiled as the image installs it (`bench.compiled`), and flatness in
   pool size (`bench.engine_bench`);
2. replay: `tokenpool replay` of a 1 000 000-event file end to end, both ways
   (`bench.replay_bench`);
3. memory, changelog bytes per event and recovery time (`bench.state_bench`);
4. stream: the worker on the embedded broker beside Faust and aiokafka
   (`bench.stream_bench`, as it is), and the same traffic through 1 and 2 workers
   (`bench.scaling_bench`), unless `--skip-stream`.

and writes `bench/results.md`: the machine, the versions, a table of every goal and
its figure, then each benchmark's own tables. `--quick` is a smaller run for checking
that everything works (its figures are not the published ones).
"""

import argparse
import contextlib
import io
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import compiled, engine_bench, replay_bench, scaling_bench, state_bench, stream_bench

ROOT = Path(__file__).resolve().parents[1]


def _machine() -> list[str]:
    load = os.getloadavg()
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1e6:.1f} GB"
    return [
        stream_bench.machine_line(0).replace("; median of 0 runs.", "."),
        f"Memory {mem}, {platform.system()} {platform.release()}; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine is shared: ratios "
        "against a baseline of the same run are the figures that count).",
    ]


def _demote(text: str) -> list[str]:
    """A sub-report's lines with its headings one level down."""
    return ["#" + line if line.startswith("#") else line for line in text.splitlines()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one run each, no stream benchmark")
    ap.add_argument("--skip-stream", action="store_true", help="leave out the stream bench")
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
    return args


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
        part1 += part1b
        part2, spread = engine_bench.flatness(eargs)
        print("\n".join(part2), flush=True)
        save(part1 + part2)

        rargs = argparse.Namespace(events=args.events, runs=min(args.runs, 3),
                                   seed=engine_bench.DEFAULT_SEED)
        part3, rate, crate = replay_bench.run(rargs, site)
        print("\n".join(part3), flush=True)
        save(part3)

    part4, figures = state_bench.run(args)
    save(part4)

    part5: list[str] = []
    if not args.skip_stream:
        with tempfile.TemporaryDirectory(prefix="bench-stream-") as d:
            out = Path(d) / "stream.md"
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet):
                stream_bench.main(["--runs", str(min(args.runs, 3)), "--events", "100000",
                                   "--out", str(out)])
            part5 = _demote(out.read_text(encoding="utf-8"))
            scaling = Path(d) / "scaling.md"
            with contextlib.redirect_stdout(quiet):
                scaling_bench.main(["--runs", str(min(args.runs, 3)), "--events", "100000",
                                    "--out", str(scaling)])
            part5 += ["", *_demote(scaling.read_text(encoding="utf-8"))]
        print("\n".join(part5), flush=True)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    summary = [
        "## Goals",
        "",
        "| benchmark | goal | figure | |",
        "|---|---|---:|---|",
        f"| engine, compiled (the image's build): decode + apply vs decode only | "
        f"≥ 20 % (issue 6) | {cratio:.1%} | {verdict(cratio >= 0.20)} |",
        f"| engine, compiled: decode + apply_all (batches, the replay's path) vs decode "
        f"only | ≥ 20 % (issue 6) | {cbatch_ratio:.1%} | {verdict(cbatch_ratio >= 0.20)} |",
        f"| engine, Python sources (`pip install -e .`): decode + apply vs decode only | "
        f"≥ 15 % (issue 2) | {ratio:.1%} | {verdict(ratio >= 0.15)} |",
        f"| engine, Python sources: decode + apply_all vs decode only | (measured) | "
        f"{batch_ratio:.1%} | |",
        f"| engine: µs per event, largest / smallest pool | ≤ 1.3x | {spread:.2f}x | "
        f"{verdict(spread <= 1.3)} |",
        f"| replay CLI, 1 M events end to end, compiled engine | ≥ 200 000 events/s | "
        f"{crate or 0:,.0f} | {verdict((crate or 0) >= replay_bench.GOAL)} |",
        f"| replay CLI, 1 M events end to end, Python sources | ≥ 200 000 events/s | "
        f"{rate:,.0f} | {verdict(rate >= replay_bench.GOAL)} |",
        f"| changelog bytes per input event (live / backfill) | < 512, flat ≤ 1.3x | "
        f"{figures['worst']:,.0f} bytes, {figures['spread']:.2f}x | "
        f"{verdict(figures['worst'] < 512 and figures['spread'] <= 1.3)} |",
        f"| recovery vs raw read of the changelog | ≤ 3x | {figures['recovery']:.1f}x | "
        f"{verdict(figures['recovery'] <= 3)} |",
        f"| memory per open session / per pass in use | (measured) | "
        f"{figures['session']:,.0f} / {figures['pass']:,.0f} bytes | |",
        *_stream_rows(part5, verdict),
        "",
    ]
    tail = ["", f"Total bench time {time.perf_counter() - started:.0f} s.", ""]
    body = head + summary + part1 + part2 + part3 + part4 + part5 + tail
    Path(args.out).write_text("\n".join(body), encoding="utf-8")
    print("\n".join(summary + tail))
    print(f"wrote {args.out}")
    return 0


def _stream_rows(part5: list[str], verdict: Callable[[bool], str]) -> list[str]:
    """The stream and scaling rows of the goal table, read from their reports."""
    text = "\n".join(part5)
    wb = re.search(r"w/b = \*\*([0-9.]+)\*\*", text)
    wa = re.search(r"w/a = \*\*([0-9.]+)\*\*", text)
    two = re.search(r"^\| 2 \|.*\| ([0-9.]+)x \|$", text, re.MULTILINE)
    if not (wb and wa and two):
        return ["| stream and scaling | | not run | |"]
    b, a = float(wb.group(1)), float(wa.group(1))
    return [
        f"| stream: worker vs a forward-only Faust agent, events/s | ≥ 70 % | {b:.0%} | "
        f"{verdict(b >= 0.70)} |",
        f"| stream: worker vs a raw aiokafka consume→produce loop, events/s | ≥ 25 % | "
        f"{a:.0%} | {verdict(a >= 0.25)} |",
        f"| scaling: 2 workers vs 1 on this 2-core machine (broker on it too) | (measured) | "
        f"{two.group(1)}x | |",
    ]


if __name__ == "__main__":
    sys.exit(main())
