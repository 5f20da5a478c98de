#!/usr/bin/env python3
"""`make demo`: start the servers, load the demo shop, and run `cdc run` on it.

On its first start cdc copies the demo tables (a snapshot), then streams
every change made after that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def main() -> int:
    try:
        ep = servers.up()
    except servers.ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mariadb((DEMO / "schema.sql").read_text())
    state = DEMO / "state"
    shutil.rmtree(state, ignore_errors=True)  # a fresh demo every time
    config = DEMO / "cdc.yml"
    sock = servers.MARIADB_SOCKET
    print(f"""
  MariaDB {ep.mariadb_host}:{ep.mariadb_port} and Elasticsearch {ep.es_version} at {ep.es_url} are up;
  the demo shop (3 tables) is loaded. cdc copies it into Elasticsearch, then streams changes.

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
