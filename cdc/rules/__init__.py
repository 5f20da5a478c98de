"""Table-to-index rules, and turning row changes into Elasticsearch actions.

Three steps, all pure (data in, data out):

1. `load_rules(path)` reads the YAML rule files and validates them up front:
   unknown keys, bad patterns or templates and overlapping exact rules are
   errors that name the file, the line, the rule (`rules[i]`) and the key.
2. `resolve_rules(rules, catalog)` checks every rule against the server's
   tables (a `Catalog`, read by `cdc.mysql.server` from information_schema), expands
   globs and regexes into one concrete `Rule` per table, and fills in what the
   binlog does not say: primary keys, MariaDB JSON columns, BINARY widths.
3. `actions_for(change, rule, version)` turns one row change into index,
   update and delete actions; `ActionBuilder` does it for a whole `RuleSet`
   (the one conversion the stream and snapshots share).

A rule in YAML (every key but schema, table and index is optional):

    rules:
      - schema: shop                          # exact, {glob: "shop_*"} or {regex: "shop_(\\d+)"}
        table: {regex: "orders_(\\d+)"}
        index: "orders-{created_at:%Y.%m}"    # fixed, {schema}/{table}/{table.1} captures, {column[:format]}
        id: [order_id, line]                  # column, list (joined by id_separator) or "{a}-{b}" template
        routing: customer_id                  # column or template
        ...                                   # see docs/rules.md

The package, one concern per module:

* `names`: table name patterns and `{...}` templates;
* `model`: `Rule` and `RuleSet`;
* `load`: reading and validating rule files (step 1);
* `resolve`: checking rules against the server's tables (step 2);
* `actions`: row change -> actions (step 3);
* `values`: converting one MySQL value into its JSON form.
"""

from cdc.rules.actions import ActionBuilder, ColumnMaps, RowError, actions_for, document_id, document_version
from cdc.rules.load import load_rules
from cdc.mysql.catalog import Catalog, ColumnInfo, TableInfo
from cdc.rules.model import Conversion, IndexSetup, Rule, RuleSet, TableFilter
from cdc.rules.names import NamePattern, Template, parse_template
from cdc.rules.resolve import Resolution, resolve_rules, resolved_or_stop

__all__ = [
    "ActionBuilder", "Catalog", "ColumnInfo", "ColumnMaps", "Conversion", "IndexSetup", "NamePattern", "Resolution",
    "RowError", "Rule", "RuleSet", "TableFilter", "TableInfo", "Template", "actions_for", "document_id",
    "document_version", "load_rules", "parse_template", "resolve_rules", "resolved_or_stop",
]
