#!/usr/bin/env python3
"""How the size of bulk requests changes what Elasticsearch takes: the same actions in
requests of `batch.max_actions` (2,000) against the same requests each split in `--split` parts.

    .venv/bin/python bench/request_size.py [--rows 100000] [--split 4] [--repeat 3]

On bench/rowpath.py's servers, schema and backlog: the backlog's actions are made once by the
native row path and grouped as a batch groups them (rowpath.py's convert child, `--bulk-out`),
then sent by a minimal HTTP client with 4 requests in flight into a fresh index, alternating
whole and split requests; the first round warms Elasticsearch up and is not counted. Why it is
here (BENCHMARKS "Fewer Python objects per row"): cdc's catch-up sends each batch as one large
request and a few small ones (the writes that wait for an earlier batch's acknowledgement).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rowpath  # noqa: E402  (its schema and the bench servers' ports)

cu = rowpath.cu


def bodies_of(ep, start, end, path: Path) -> list[bytes]:
    subprocess.run([sys.executable, str(Path(rowpath.__file__).resolve()), "--child", "native", "--host",
                    ep.mariadb_host, "--port", str(ep.mariadb_port), "--user", ep.admin_user, "--password",
                    ep.admin_password, "--server-id", str(next(cu._server_ids)), "--start", str(start), "--end",
                    str(end), "--bulk-out", str(path), "--bulk-index", "bench-split"],
                   check=True, capture_output=True, cwd=cu.ROOT, env={"PYTHONPATH": str(cu.ROOT), "PATH": "/usr/bin:/bin"})
    bodies = rowpath.read_bodies(path.read_bytes())
    path.unlink()
    return bodies


def split(body: bytes, parts: int) -> list[bytes]:
    """A bulk body in `parts` bodies at action boundaries (a delete is one line, the others two)."""
    lines, actions, i = body.split(b"\n")[:-1], [], 0
    while i < len(lines):
        width = 1 if lines[i].startswith(b'{"delete"') else 2
        actions.append(lines[i:i + width])
        i += width
    size = -(-len(actions) // parts)
    return [b"\n".join(line for action in actions[j:j + size] for line in action) + b"\n"
            for j in range(0, len(actions), size)]


def send_all(es_url: str, bodies: list[bytes], index: str, in_flight: int = 4) -> float:
    """`bodies` into a fresh `index` with `in_flight` requests at once (rowpath.send_bodies); seconds."""
    seconds, errors = rowpath.send_bodies(
        es_url, [b.replace(b'"_index":"bench-split"', b'"_index":"%s"' % index.encode()) for b in bodies], in_flight)
    if errors:
        raise SystemExit(f"bulk requests failed: {errors[0]}")
    url = urllib.parse.urlsplit(es_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    conn.request("DELETE", f"/{index}")
    conn.getresponse().read()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--split", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ep = cu.servers.up()
    conn = cu.admin_conn(ep)
    cu.setup_schema(conn)
    start = cu.master_position(conn)
    cu.generate_backlog(conn, args.rows)
    end = cu.end_on_marker_commit(conn)
    whole = bodies_of(ep, start, end, Path(tempfile.mkdtemp()) / "bodies.bin")
    parted = [part for body in whole for part in split(body, args.split)]
    send_all(ep.es_url, whole, "bench-split-warm")
    rates: dict[str, list[float]] = {"whole": [], "split": []}
    for i in range(args.repeat):
        for name in ("whole", "split") if i % 2 == 0 else ("split", "whole"):
            bodies = whole if name == "whole" else parted
            seconds = send_all(ep.es_url, bodies, f"bench-split-{i}-{name}")
            rates[name].append(args.rows / seconds)
            cu.log(f"{name}: {len(bodies)} requests in {seconds:.2f}s = {args.rows / seconds:,.0f} rows/s")
    w, s = statistics.median(rates["whole"]), statistics.median(rates["split"])
    print(f"| requests (4 in flight) | rows/s, median of {args.repeat} |\n|---|---|\n"
          f"| {len(whole)} of up to 2,000 actions | {w:,.0f} |\n| {len(parted)} (each split in {args.split}) | "
          f"{s:,.0f} (×{s / w:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
