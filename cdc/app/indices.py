"""`cdc indices plan|create`: the indices and templates the rules' `create_index` asks for, the
unsigned 64-bit fields cdc maps for the other rules, and (indices.aliases) the alias each fixed name
is: what `cdc run` does at start-up. A name that is a concrete index is shown with how to move it
behind an alias (`cdc rebuild`)."""

from __future__ import annotations

from cdc.config import Config
from cdc.es.indices import PlanState, create_missing, inspect, plan_start
from cdc.es.destination import Destination
from cdc.mysql.server import Database
from cdc.rules import RuleSet, resolved_or_stop
from cdc.rules.values import ValueOptions


def index_states(config: Config, rules: RuleSet, create: bool) -> list[PlanState]:
    """What exists, what is missing and what differs; with `create`, create what is missing (never change)."""
    db = Database(config.mysql)
    try:
        rules = resolved_or_stop(rules, db.catalog(rules))
    finally:
        db.close()
    aliases = config.indices.aliases
    plans = plan_start(rules.rules, ValueOptions.from_config(config.values), aliases)
    sink = Destination(config.elasticsearch)
    try:
        return create_missing(plans, sink, aliases) if create else inspect(plans, sink, aliases)
    finally:
        sink.close()
