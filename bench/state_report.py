"""The tables of `bench.state_bench`: memory, changelog bytes per event, checkpoint cost."""

import statistics
from typing import Any

CHANGELOG_GOAL = 512
FLATNESS_GOAL = 1.3


def memory_lines(mem: dict[str, float]) -> list[str]:
    return [
        "## Memory: worker state per open session and per pass in use",
        "",
        "Engine state measured with tracemalloc over 20 000 of each; snapshot = the "
        "same state as stored (msgpack).",
        "",
        "| what | bytes in memory | bytes in a snapshot |",
        "|---|---:|---:|",
        f"| one open session (its session, holder and the pass it consumed) | "
        f"{mem['session_memory']:,.0f} | {mem['session_snapshot']:,.0f} |",
        f"| one pass in use (sessions closed and forgotten, the pass not yet back) | "
        f"{mem['pass_memory']:,.0f} | {mem['pass_snapshot']:,.0f} |",
        "",
    ]


def _capacity(r: dict[str, Any]) -> str:
    eos = ", exactly_once" if r["guarantee"] == "exactly_once" else ""
    return f"{r['capacity']:,}{eos}"


def changelog_lines(label: str, rows: list[list[dict[str, Any]]]
                    ) -> tuple[list[str], dict[str, float]]:
    """The changelog table; figures `worst` and `spread` of the at_least_once rows (the
    goal), and `eos_live`, `eos_backfill` of an exactly_once row if there is one."""
    table, live, backfill = [], [], []
    figures: dict[str, float] = {}
    for runs in rows:
        r = runs[0]
        lv = statistics.median(x["live"] for x in runs)
        bf = statistics.median(x["backfill"] for x in runs)
        if r["guarantee"] == "exactly_once":
            figures |= {"eos_live": lv, "eos_backfill": bf}
        else:
            live.append(lv)
            backfill.append(bf)
        table.append(f"| {_capacity(r)} | {r['prefill']:,} | {r['prefill_bytes']:,} | "
                     f"{r['idle_rate']:,.0f} | {r['paced']:,} | {r['paced_records']:,} | "
                     f"**{lv:,.0f}** | {r['events']:,} | {r['records']:,} | **{bf:,.0f}** |")
    spread = max(max(live) / min(live), max(backfill) / min(backfill))
    worst = max(live + backfill)
    eos = ("; the exactly_once row (read read_committed: transaction markers not "
           "counted) is not part of the goal" if "eos_live" in figures else "")
    lines = [
        f"## Changelog on {label}: bytes written per input event vs pool size",
        "",
        f"The real worker on {label}, one partition; key + value bytes read back from its "
        "changelog topics (state and ledger) after the pre-fill, after the first events "
        "of the mix sent one at a time (live traffic: each sent once the previous one is "
        "committed, so one checkpoint per event; what the idle worker writes meanwhile, "
        "measured over 5 s before, is deducted) and after the rest of the mix sent at "
        "once (a backfill: a checkpoint writes each touched record once per batch). The "
        f"mix is the same at every size{eos}.",
        "",
        "| capacity (passes) | pre-fill events | pre-fill changelog bytes | "
        "idle bytes/s | live events | records | bytes / event | backfill events | "
        "records | bytes / event |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        f"Largest {worst:,.0f} bytes per event (goal < {CHANGELOG_GOAL}): "
        f"{'met' if worst < CHANGELOG_GOAL else 'NOT met'}; largest / smallest "
        f"**{spread:.2f}x** (flat: ≤ {FLATNESS_GOAL}x): "
        f"{'met' if spread <= FLATNESS_GOAL else 'NOT met'}.",
        "",
    ]
    return lines, figures | {"worst": worst, "spread": spread}


def checkpoint_lines(label: str, rows: list[list[dict[str, Any]]], fence: float
                     ) -> tuple[list[str], dict[str, float]]:
    """The checkpoint table; figures `cp_*` (live, at_least_once: the median over the
    sizes) and `eos_cp_*` (live, exactly_once)."""
    table = []
    live: dict[str, list[float]] = {}
    figures: dict[str, float] = {}
    for runs in rows:
        r = runs[0]
        for phase in ("live", "backfill"):
            c = {k: statistics.median(x[f"{phase}_checkpoints"][k] for x in runs)
                 for k in ("all", "checkpoints", "seconds", "state", "fences", "records",
                           "bytes")}
            table.append(
                f"| {_capacity(r)} | {phase} | {c['checkpoints']:,.0f} ({c['all']:,.0f}) | "
                f"{c['seconds'] * 1000:.1f} | {c['state']:.2f} | {c['fences']:.2f} | "
                f"{c['records']:.2f} | {c['bytes']:,.0f} |")
            if phase != "live":
                continue
            if r["guarantee"] == "exactly_once":
                figures |= {f"eos_cp_{k}": v for k, v in c.items()}
            else:
                for k, v in c.items():
                    live.setdefault(k, []).append(v)
    figures |= {f"cp_{k}": statistics.median(v) for k, v in live.items()}
    lines = [
        f"## Checkpoint cost on {label}",
        "",
        "The same runs as the changelog table. Checkpoints = those that wrote state "
        "(one commit record each, counted in the changelog read back; in brackets every "
        "checkpoint the worker's `tokenpool_checkpoint_duration_seconds` counted, with "
        "those that had nothing to write: ticks acknowledged, no state changed, done at "
        "once). Per checkpoint that wrote state: the mean time to make it durable (the "
        "histogram's sum over the same span: outputs and state records acknowledged by "
        "the broker, one transaction under exactly_once), the state records it wrote "
        "(`tokenpool_checkpoint_records_total{kind=\"state\"}`: its commit record and "
        "updates; a deletion of a key the table does not hold is counted there but not "
        "written), the fence records read back (the one-record batch that ends each "
        "at_least_once checkpoint on Tansu), and every changelog record and byte read "
        "back.",
        "",
        "| capacity (passes) | part of the mix | checkpoints (all) | ms per checkpoint "
        "(mean) | state records / checkpoint | fence records / checkpoint | changelog "
        "records / checkpoint | changelog bytes / checkpoint |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        f"A one-record batch (acks=all, linger 5 ms, as the worker's producer sends: what "
        f"a fence record adds to a checkpoint) took {fence * 1000:.1f} ms on {label}, "
        "median of 50 sent one at a time.",
        "",
    ]
    return lines, figures
