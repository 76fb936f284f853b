"""`tokenpool estimate --from-history`: the seed's formula (R12) per group, with people
and passes per person taken from the history's demand run (every pool unlimited), so the
estimate is of what people did, not of what an exhausted pool let them do."""

import argparse
from datetime import timedelta
from fractions import Fraction

from rules.estimate import Estimate
from rules.planning import build_plan
from rules.scenario import Scenario
from stream_app.planning.runs import plain, run
from stream_app.planning.source import history
from stream_app.settings import rule_config


def estimates_from_history(args: argparse.Namespace,
                           buffer: Fraction) -> tuple[dict[str, Estimate], int]:
    """Each group's estimate, and how many users would be cheaper on a user access pass
    (more than 10 passes in some 28 days). Raises what `planning.source` raises."""
    config = rule_config(args)
    with history(args.from_history, args, "estimate") as path, plain(path) as replay:
        demand = run(replay, Scenario.demand(), config)
    span = config.pass_lifetime // timedelta(microseconds=1)
    plan = build_plan(demand.usage, demand.usage, {}, demand.scenario.uap_holders,
                      demand.start, demand.end, span, buffer, 10, config.passes_per_token)
    estimates = {g.group: g.formula for g in plan.groups if g.people}
    heavy = sum(len(g.uap_candidates) for g in plan.groups)
    return estimates, heavy
