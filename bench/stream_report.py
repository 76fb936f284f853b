"""The report of `bench.stream_bench`: its tables, ratios and checks, and the figures
`python -m bench` puts in its goal table."""

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from bench.harness import brokers
from bench.harness.report import machine_line

PATHS = {
    "w": "(w) tokenpool worker, `--mode replay`",
    "e": "(e) tokenpool worker, `--mode replay --guarantee exactly_once`",
    "b": "(b) Faust agent, forward only",
    "a": "(a) raw aiokafka consume→produce",
}
RATIOS = (("w", "b"), ("w", "a"), ("e", "w"), ("e", "a"))
"""The ratios of events/s reported, numerator first."""


def _ratio(med: dict[str, dict[str, float]], top: str, bottom: str, what: str) -> float:
    """events/s of `top` over `bottom`: their times the other way round."""
    return med[bottom][what] / med[top][what]


def figures(med: dict[str, dict[str, float]], n: int) -> dict[str, float]:
    """events/s per path (`w`, ...), the ratios (`w/b`, ...) and `ok` (1.0 when every
    worker run matched the replay)."""
    out = {key: n / m["processing"] for key, m in med.items()}
    for top, bottom in RATIOS:
        if top in med and bottom in med:
            out[f"{top}/{bottom}"] = _ratio(med, top, bottom, "processing")
    return out


def _checks(key: str, rs: list[Any]) -> tuple[str, bool]:
    texts, all_ok = [], True
    for i, r in enumerate(rs):
        nt = r.notes
        ok = not (nt["missing"] or nt["unexpected"] or nt["differ"] or nt["dead_letters"]
                  or (key == "e" and nt["copies"]))
        all_ok &= ok
        texts.append(
            f"run {i + 1}: {nt['outputs']:,} output records, "
            f"{'match' if ok else 'MISMATCH'} (missing {nt['missing']}, unexpected "
            f"{nt['unexpected']}, differing {nt['differ']}, copies {nt['copies']}, dead "
            f"letters {nt['dead_letters']})"
        )
    return f"({key}) outputs vs `tokenpool replay`: " + "; ".join(texts) + ".", all_ok


def _run_columns(key: str) -> list[tuple[str, Callable[[Any], float]]]:
    """The per-run table's columns of path `key`: heading and value of a result."""
    columns: list[tuple[str, Callable[[Any], float]]] = [
        (f"{key} startup", lambda r: r.startup), (f"{key} done", lambda r: r.processing)]
    if key in "we":
        columns.append((f"{key} last output", lambda r: r.notes["last_output"]))
    if key in "web":
        columns.append((f"{key} committed seen", lambda r: r.notes["committed_seen"]))
    return columns


def report(args: argparse.Namespace, work: Any, results: dict[str, list[Any]],
           orders: list[str], produced: list[float],
           elapsed: float) -> tuple[list[str], dict[str, float]]:
    n = work.sessions
    keys = [k for k in PATHS if k in results]
    med = {key: {what: statistics.median(getattr(r, what) for r in rs)
                 for what in ("startup", "processing", "total")}
           | {what: statistics.median(r.notes[what] for r in rs)
              for what in ("cpu", "broker_cpu", "other_cpu")}
           for key, rs in results.items()}
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(work.counts.items()))
    name = brokers.label(args.broker)
    lines = [
        f"# tokenpool streaming benchmark on {name}",
        "",
        machine_line(args.runs, args.broker),
        "",
        f"Workload: synthetic site, {work.users:,} users, {args.groups} groups, "
        f"{args.days} days, seed {args.seed}: {sum(work.counts.values()):,} records "
        f"({counts}) on 4 partitions, written before any consumer starts "
        f"(produce took {statistics.median(produced):.1f} s median). Events below = "
        f"the {n:,} session records; (w) also reads the allocations. "
        f"`tokenpool replay` of the same records: {len(work.expected):,} outputs in "
        f"{work.replay_seconds:.2f} s ({n / work.replay_seconds:,.0f} ev/s, in-process "
        "engine only).",
        "",
        "| path | startup s | processing s | events/s (processing) | "
        f"events/s incl. startup | CPU: consumer process | {name} | everything else |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        m = med[key]
        lines.append(
            f"| {PATHS[key]} | {m['startup']:.2f} | {m['processing']:.2f} | "
            f"{n / m['processing']:,.0f} | {n / m['total']:,.0f} | "
            f"{m['cpu']:.2f} | {m['broker_cpu']:.2f} | {m['other_cpu']:.2f} |"
        )
    ratios = [f"{top}/{bottom} = **{_ratio(med, top, bottom, 'processing'):.2f}** "
              f"({_ratio(med, top, bottom, 'total'):.2f} incl. startup)"
              for top, bottom in RATIOS if top in med and bottom in med]
    lines += [
        "",
        "Ratios of events/s (processing): " + "; ".join(ratios) + ".",
        "",
        "CPU columns: cores' worth of CPU (user + system, all threads, 1.00 = one core "
        "busy) between first input and done, from /proc; for (a) the consumer process is "
        "this bench process. Everything else = the machine's busy time minus the consumer, "
        "the broker and this process: other jobs on the machine, which disturb the figures "
        "when well above zero.",
        "",
        "Per run (seconds from each path's first input; startup before it):",
        "",
        "| run | order | " + " | ".join(h for k in keys for h, _ in _run_columns(k))
        + f" | everything else's CPU {' / '.join(keys)} |",
        "|---:|---|" + "---:|" * sum(len(_run_columns(k)) for k in keys) + "---|",
    ]
    for i, order in enumerate(orders):
        cells = [str(i + 1), order, *(f"{value(results[k][i]):.2f}" for k in keys
                                      for _, value in _run_columns(k))]
        cells.append(" / ".join(f"{results[k][i].notes['other_cpu']:.2f}" for k in keys))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    figs = figures(med, n)
    ok = True
    for key in keys:
        if key in "we":
            text, good = _checks(key, results[key])
            lines += [text, ""]
            ok &= good
    figs["ok"] = float(ok)
    lines += [f"Stream bench time on {name} {elapsed:.0f} s.", ""]
    return lines, figs
