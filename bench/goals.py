"""The goal tables of `bench/results.md`: the broker-independent goals, then one
column per broker for what runs on one."""

from collections.abc import Callable, Mapping

from bench.harness import brokers
from bench.recovery_bench import GOAL as RECOVERY_GOAL
from bench.replay_bench import GOAL as REPLAY_GOAL
from bench.state_report import CHANGELOG_GOAL, FLATNESS_GOAL

STREAM_VS_FAUST = 0.70
STREAM_VS_RAW = 0.25

Figures = Mapping[str, float]


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def engine_rows(engine: Figures, replay: Figures, memory: Figures) -> list[str]:
    """What runs without a broker: the engine, the replay CLI, memory."""
    c, cb, r, rb = engine["compiled"], engine["compiled_batch"], engine["sources"], \
        engine["sources_batch"]
    return [
        "| benchmark | goal | figure | |",
        "|---|---|---:|---|",
        f"| engine, compiled (the image's build): decode + apply vs decode only | "
        f"≥ 20 % (issue 6) | {c:.1%} | {verdict(c >= 0.20)} |",
        f"| engine, compiled: decode + apply_all (batches, the replay's path) vs decode "
        f"only | ≥ 20 % (issue 6) | {cb:.1%} | {verdict(cb >= 0.20)} |",
        f"| engine, Python sources (`pip install -e .`): decode + apply vs decode only | "
        f"≥ 15 % (issue 2) | {r:.1%} | {verdict(r >= 0.15)} |",
        f"| engine, Python sources: decode + apply_all vs decode only | (measured) | "
        f"{rb:.1%} | |",
        f"| engine: µs per event, largest / smallest pool | ≤ 1.3x | "
        f"{engine['spread']:.2f}x | {verdict(engine['spread'] <= 1.3)} |",
        f"| replay CLI, 1 M events end to end, compiled engine | ≥ 200 000 events/s | "
        f"{replay['compiled']:,.0f} | {verdict(replay['compiled'] >= REPLAY_GOAL)} |",
        f"| replay CLI, 1 M events end to end, Python sources | ≥ 200 000 events/s | "
        f"{replay['sources']:,.0f} | {verdict(replay['sources'] >= REPLAY_GOAL)} |",
        f"| memory per open session / per pass in use | (measured) | "
        f"{memory['session']:,.0f} / {memory['pass']:,.0f} bytes | |",
    ]


Cell = Callable[[Figures, bool], str]
"""A row's cell from one broker's figures (and whether the broker is Kafka)."""


def _have(*keys: str) -> Callable[[Cell], Cell]:
    def wrap(cell: Cell) -> Cell:
        def guarded(f: Figures, kafka: bool) -> str:
            return cell(f, kafka) if all(k in f for k in keys) else "not run"
        return guarded
    return wrap


@_have("worst", "spread")
def _changelog(f: Figures, _: bool) -> str:
    ok = f["worst"] < CHANGELOG_GOAL and f["spread"] <= FLATNESS_GOAL
    return f"{f['worst']:,.0f} bytes, {f['spread']:.2f}x: {verdict(ok)}"


@_have("cp_seconds", "fence_seconds")
def _checkpoint(f: Figures, _: bool) -> str:
    return (f"{f['cp_seconds'] * 1000:.1f} ms; {f['cp_state']:.2f} state + "
            f"{f['cp_fences']:.2f} fence records, {f['cp_bytes']:,.0f} bytes (a one-record "
            f"batch: {f['fence_seconds'] * 1000:.1f} ms)")


def _eos_checkpoint(f: Figures, kafka: bool) -> str:
    if not kafka:
        return "no transactions"
    if "eos_cp_seconds" not in f:
        return "not run"
    return (f"{f['eos_cp_seconds'] * 1000:.1f} ms; {f['eos_cp_state']:.2f} state "
            f"records, {f['eos_cp_bytes']:,.0f} bytes")


@_have("recovery")
def _recovery(f: Figures, _: bool) -> str:
    return f"{f['recovery']:.2f}x: {verdict(f['recovery'] <= RECOVERY_GOAL)}"


@_have("w/b")
def _vs_faust(f: Figures, _: bool) -> str:
    return f"{f['w/b']:.0%}: {verdict(f['w/b'] >= STREAM_VS_FAUST)}"


@_have("w/a")
def _vs_raw(f: Figures, _: bool) -> str:
    return f"{f['w/a']:.0%}: {verdict(f['w/a'] >= STREAM_VS_RAW)}"


@_have("w", "a")
def _rates(f: Figures, _: bool) -> str:
    checked = "outputs ≡ replay" if f.get("ok") else "**outputs differ from the replay**"
    return f"{f['w']:,.0f} / {f['a']:,.0f} ({checked})"


def _eos_stream(f: Figures, kafka: bool) -> str:
    if not kafka:
        return "no transactions"
    if "e/w" not in f:
        return "not run"
    return f"{f['e/w']:.0%} ({f['e']:,.0f} vs {f['w']:,.0f} events/s; e/a {f['e/a']:.0%})"


@_have("2x")
def _scaling(f: Figures, _: bool) -> str:
    return f"{f['2x']:.2f}x ({f['1']:,.0f} → {f['2']:,.0f} events/s)"


ROWS: list[tuple[str, str, Cell]] = [
    ("changelog bytes per input event (live / backfill), largest and largest / smallest",
     f"< {CHANGELOG_GOAL}, flat ≤ {FLATNESS_GOAL}x", _changelog),
    ("checkpoint, live (one per event): mean time, records and changelog bytes each",
     "(measured)", _checkpoint),
    ("checkpoint under exactly_once, live", "(measured)", _eos_checkpoint),
    ("recovery from the changelog vs a raw read of it", f"≤ {RECOVERY_GOAL:g}x", _recovery),
    ("stream: worker vs a forward-only Faust agent, events/s", "≥ 70 %", _vs_faust),
    ("stream: worker vs a raw aiokafka consume→produce loop, events/s", "≥ 25 %", _vs_raw),
    ("stream: worker / raw loop, session events/s", "(measured)", _rates),
    ("stream: exactly_once vs at_least_once worker, events/s", "(measured)", _eos_stream),
    ("scaling: 2 workers vs 1 on this 2-core machine (broker on it too)", "(measured)",
     _scaling),
]


def broker_rows(per_broker: Mapping[str, Figures]) -> list[str]:
    """One column per broker of `per_broker` (choice → its figures)."""
    names = list(per_broker)
    lines = ["| benchmark | goal | " + " | ".join(brokers.label(b) for b in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for what, goal, cell in ROWS:
        cells = [cell(per_broker[b], brokers.kafka_version(b) is not None) for b in names]
        lines.append(f"| {what} | {goal} | " + " | ".join(cells) + " |")
    return lines


def time_rows(seconds: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Seconds per part (state, stream, scaling) and broker (choice → part → s)."""
    names = list(seconds)
    parts = [p for p in ("state", "stream", "scaling") if any(p in s for s in seconds.values())]
    lines = ["| part | " + " | ".join(brokers.label(b) for b in names) + " |",
             "|---|" + "---:|" * len(names)]
    for p in [*parts, "all"]:
        cells = [f"{seconds[b].get(p, 0.0):.0f}" if p != "all"
                 else f"{sum(seconds[b].values()):.0f}" for b in names]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return lines
