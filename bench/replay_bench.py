"""`tokenpool replay` end to end on a large history, beside reading the same file.

A synthetic site (`stream_app.site.synthetic.generate`) large enough for `--events` events
(1 000 000 by default) is written as a replay file once, untimed. Then, alternating,
each `--runs` times (median):

(r) `python -m stream_app replay FILE --out OUT`, a subprocess: start, read, decode,
    merge, apply, write every output. Goal: at least 200 000 events/s.
(e) the same command on an empty file: the process start and imports inside (r).
(r) compiled, with `--compiled` (and in `python -m bench`): (r) run by the wheel the
    image installs, its engine compiled with mypyc; its outputs must equal (r)'s.
(d) in this process, msgspec decode only of every line of the same file: read it in
    1 MiB blocks and decode each line's envelope and value with the same strict
    decoders, one line at a time, as any reader of the file must.

Figures: events / (r) ("end to end"), events / ((r) - (e)) ("without start-up"), and
(d)'s events/s beside them.
"""

import argparse
import filecmp
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench import compiled
from schemas import INPUT_TOPICS, ReplayRecord, input_decoder
from stream_app.site.synthetic import DEFAULT_SEED, generate, to_jsonl_lines

GOAL = 200_000
ROOT = Path(__file__).resolve().parents[1]
EVENTS_PER_USER = 46.4
"""Events a synthetic user makes in 29 days (10 000 users give 463 921 events)."""


def write_history(path: Path, events: int, seed: int) -> int:
    users = max(1, round(events / EVENTS_PER_USER))
    n = 0
    with open(path, "wb") as f:
        for line in to_jsonl_lines(generate(users=users, groups=50, days=29, seed=seed)):
            f.write(line)
            n += 1
    return n


def decode_only(path: Path) -> int:
    envelope = msgspec.json.Decoder(ReplayRecord)
    decoders = {str(t): input_decoder(t) for t in INPUT_TOPICS}
    n = 0
    with open(path, "rb") as f:
        for line in f:
            record = envelope.decode(line)
            decoders[record.topic].decode(record.value)
            n += 1
    return n


def replay_seconds(path: Path, out: Path, site: Path | None = None) -> float:
    """Seconds of one replay; with `site` (`bench.compiled.build`), of the compiled build."""
    cmd = [sys.executable, "-m", "stream_app", "replay", str(path), "--out", str(out)]
    env = None
    if site is not None:
        cmd.insert(1, "-P")
        env = compiled.env(site)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run(
    args: argparse.Namespace, site: Path | None = None
) -> tuple[list[str], float, float | None]:
    """The report's lines, events/s, and events/s of the compiled build (`site`) when
    given, timed in the same rounds."""
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as d:
        tmp = Path(d)
        path, empty, out = tmp / "history.jsonl", tmp / "empty.jsonl", tmp / "out.jsonl"
        t0 = time.perf_counter()
        n = write_history(path, args.events, args.seed)
        made = time.perf_counter() - t0
        empty.write_bytes(b"")
        full_t, empty_t, dec_t, comp_t = [], [], [], []
        for _ in range(args.runs):
            full_t.append(replay_seconds(path, out))
            if site is not None:
                comp_t.append(replay_seconds(path, tmp / "out-compiled.jsonl", site))
                assert filecmp.cmp(out, tmp / "out-compiled.jsonl", shallow=False), \
                    "the compiled engine wrote other outputs"
            empty_t.append(replay_seconds(empty, tmp / "out-empty.jsonl"))
            gc.collect()
            t0 = time.perf_counter()
            assert decode_only(path) == n
            dec_t.append(time.perf_counter() - t0)
        outputs = out.read_bytes().count(b"\n")
        size = path.stat().st_size
    full, start, dec = (statistics.median(x) for x in (full_t, empty_t, dec_t))
    rate = n / full
    comp = statistics.median(comp_t) if comp_t else None
    comp_rate = n / comp if comp else None
    lines = [
        "## Replay CLI: a history file end to end",
        "",
        f"{n:,} events ({size / 1e6:.0f} MB, made in {made:.0f} s), {outputs:,} output "
        f"lines written; median of {args.runs} runs.",
        "",
        "| path | median s | events/s |",
        "|---|---:|---:|",
        f"| (r) `tokenpool replay FILE --out OUT`, end to end | {full:.2f} | **{rate:,.0f}** |",
        f"| (r) without start-up ((r) - (e), (e) = {start:.2f} s on an empty file) | "
        f"{full - start:.2f} | {n / (full - start):,.0f} |",
        *([f"| (r) with the engine compiled (`TOKENPOOL_COMPILE=1`, as the image installs "
            f"it); outputs identical | {comp:.2f} | **{comp_rate:,.0f}** |"] if comp else []),
        f"| (d) msgspec decode only of every line | {dec:.2f} | {n / dec:,.0f} |",
        "",
        f"End to end: **{rate:,.0f} events/s** (goal ≥ {GOAL:,}): "
        f"{'met' if rate >= GOAL else 'NOT met'}; (r) / (d) {dec / full:.1%}.",
        "",
    ]
    return lines, rate, comp_rate


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--replay-events", dest="events", type=int, default=1_000_000,
                    help="events in the replay file (about)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replay_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--compiled", action="store_true",
                    help="also time the replay with the engine compiled (builds it first)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replay-compiled-") as d:
        lines, _, _ = run(args, compiled.build(Path(d)) if args.compiled else None)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
