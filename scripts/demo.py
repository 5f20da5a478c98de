#!/usr/bin/env python3
"""`make demo`: start the servers, load the demo shop, and run `cdc run` on it.

Every run is a fresh demo: the shop tables are loaded again, and the saved
position (demo/state/) and the demo's Elasticsearch indices are removed, so
nothing of an earlier run is left (its documents would be orphans: `cdc verify`
would report them). On its first start cdc copies the demo tables (a snapshot),
then streams every change made after that.
"""

from __future__ import annotations

import os
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import servers  # noqa: E402

DEMO = ROOT / "demo"


def mariadb(sql: str) -> str:
    out = subprocess.run(["mariadb", f"--socket={servers.MARIADB_SOCKET}", "-uroot", "--batch", "--skip-column-names"],
                         input=sql, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"demo: mariadb failed: {out.stderr}")
    return out.stdout


def demo_indices(demo: Path = DEMO) -> list[str]:
    """The indices the demo's rules write to (fixed names: see demo/rules/shop.yml)."""
    sys.path.insert(0, str(ROOT))
    from cdc.rules import load_rules

    return sorted({rule.index for rule in load_rules(demo / "rules").rules})


def _get_names(url: str) -> list[str]:
    """The concrete indices a GET of an index, alias or pattern answers for; [] for a 404."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return sorted(json.load(answer))
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # 404: not there, nothing to reset
            raise
        return []


def reset(es_url: str, demo: Path = DEMO) -> list[str]:
    """A fresh demo: the shop tables loaded again, no saved position, no documents of an earlier run.

    Returns the demo index names it deleted (each the indices behind it: the alias goes with them).
    """
    mariadb((demo / "schema.sql").read_text())
    shutil.rmtree(demo / "state", ignore_errors=True)
    deleted = []
    for index in demo_indices(demo):
        # The name is an alias onto <name>_v1 (docs/verify-and-rebuild.md "Rebuilding an index"), which DELETE refuses:
        # delete the indices behind it, and those earlier rebuilds kept.
        behind = _get_names(f"{es_url}/{index}") + _get_names(f"{es_url}/{index}_v*/_alias")
        for concrete in dict.fromkeys(behind):
            urllib.request.urlopen(urllib.request.Request(f"{es_url}/{concrete}", method="DELETE"), timeout=30)
        if behind:
            deleted.append(index)
    return deleted


def main() -> int:
    try:
        ep = servers.up()
    except servers.ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    deleted = reset(ep.es_url)
    config = DEMO / "cdc.yml"
    sock = servers.MARIADB_SOCKET
    print(f"""
  MariaDB {ep.mariadb_host}:{ep.mariadb_port} and Elasticsearch {ep.es_version} at {ep.es_url} are up;
  the demo shop (3 tables) is loaded. cdc copies it into Elasticsearch, then streams changes.
  A fresh demo every time: the shop tables were loaded again, demo/state/ was removed and
  the demo indices were deleted ({", ".join(deleted) or "none existed yet"}).

  Look at the documents:
      curl -s '{ep.es_url}/shop-products/_search?pretty'
      curl -s '{ep.es_url}/shop-order-lines/_doc/1:2?pretty'
  Change a row and look again (in another terminal):
      mariadb --socket={sock} -uroot shop -e "UPDATE products SET price = 5.25 WHERE sku = 'TEA-01'"
      mariadb --socket={sock} -uroot shop -e "INSERT INTO orders (customer) VALUES ('linus')"
  Stop with Ctrl-C (the position is saved in demo/state/); stop the servers with
      python3 scripts/servers.py down
""", flush=True)
    cdc = ROOT / ".venv" / "bin" / "cdc"
    os.chdir(DEMO)
    os.execv(str(cdc), [str(cdc), "run", "--config", str(config), "--log-format", "text"])


if __name__ == "__main__":
    sys.exit(main())
