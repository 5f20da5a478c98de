#!/usr/bin/env python3
"""Client CPU per 2,000-document bulk request, per engine and client library (issue 29: does opensearch-py stay?).

    PYTHONPATH=. .venv/bin/python bench/clients.py [--es URL] [--opensearch URL] [--requests N]

Each line sends N bulk requests of 2,000 documents shaped like bench/snapshot.py's table
(encoded before the clock starts, a newer external version each time, so every item succeeds
as in a snapshot) and prints this process's CPU per request:

* cdc's destination (`cdc.es.destination.Destination.write`) on Elasticsearch (elasticsearch-py)
  and on OpenSearch (opensearch-py): what cdc costs per request today;
* elastic_transport alone (the transport under elasticsearch-py, which does not check the product)
  on OpenSearch: what cdc would cost there if opensearch-py went;
* urllib3 alone, on each: the floor.

Defaults are the shared test servers (Elasticsearch 8 on 19200, OpenSearch 2 on 19202); the
index `bench-clients` is made and deleted on each.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

INDEX = "bench-clients"
DOCS = 2000
FIELDS = "errors,items.*.status,items.*.error"  # cdc.es.bulk.BULK_RESPONSE_FIELDS


def body(version: int) -> bytes:
    lines = []
    for i in range(1, DOCS + 1):
        lines.append(orjson.dumps({"index": {"_index": INDEX, "_id": str(i), "version": version,
                                             "version_type": "external"}}))
        lines.append(orjson.dumps({
            "id": i, "account_id": i % 5000, "sku": f"SKU-{i % 997}", "qty": i % 17,
            "price": f"{(i % 10000) / 100:.2f}", "status": ("new", "paid", "shipped")[i % 3],
            "created_at": f"2024-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}",
            "flag": i % 2, "note": chr(97 + i % 26) * (60 + i % 60), "score": i / 7}))
    return b"\n".join(lines) + b"\n"


class Bodies:
    """Encoded bodies, each with a newer version than the last (so no item is a stale 409)."""

    def __init__(self):
        self.version = 1

    def take(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            self.version += 1
            out.append(body(self.version))
        return out


def cpu_us(send, bodies: list[bytes]) -> float:
    send(bodies[0])  # warm: connection opened, index created
    started = time.process_time()
    for one in bodies[1:]:
        send(one)
    return (time.process_time() - started) / (len(bodies) - 1) * 1e6


def urllib3_alone(url: str, bodies: list[bytes], content_type: str) -> float:
    import urllib3

    host, port = url.rsplit("//", 1)[1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1)

    def send(data: bytes) -> None:
        resp = pool.urlopen("PUT", f"/_bulk?filter_path={FIELDS}", body=data,
                            headers={"content-type": content_type, "accept": "application/json"})
        assert resp.status == 200 and b'"errors":false' in resp.data, resp.data[:300]

    return cpu_us(send, bodies)


def through_cdc(url: str, bodies: list[bytes]) -> tuple[str, float]:
    from cdc.config import ElasticsearchConfig
    from cdc.es.destination import Destination
    from cdc.model import EncodedActions

    dest = Destination(ElasticsearchConfig(hosts=[url]))
    dest.check()

    def send(data: bytes) -> None:
        result = dest.write(EncodedActions(data, DOCS, len(data), list))
        assert len(result.with_outcome()) == 0

    us = cpu_us(send, bodies)
    name = dest.engine.name if dest.engine else url
    dest.admin("DELETE", f"/{INDEX}")
    dest.close()
    return name, us


def elastic_transport_alone(url: str, bodies: list[bytes]) -> float:
    import elastic_transport

    transport = elastic_transport.Transport([elastic_transport.NodeConfig(*_split(url))], max_retries=0)

    def send(data: bytes) -> None:
        resp = transport.perform_request("PUT", f"/_bulk?filter_path={FIELDS}", body=data,
                                         headers={"content-type": "application/x-ndjson",
                                                  "accept": "application/json"})
        assert resp.meta.status == 200 and resp.body["errors"] is False

    us = cpu_us(send, bodies)
    transport.close()
    return us


def _split(url: str) -> tuple[str, str, int]:
    scheme, rest = url.split("://")
    host, port = rest.split(":")
    return scheme, host, int(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--es", default="http://127.0.0.1:19200")
    parser.add_argument("--opensearch", default="http://127.0.0.1:19202")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    bodies = Bodies()
    for url in (args.es, args.opensearch):
        name, us = through_cdc(url, bodies.take(args.requests))
        print(f"{name}: cdc's destination {us:,.0f} us of client CPU per request")
        if "19202" in url or url == args.opensearch:
            print(f"  elastic_transport alone: {elastic_transport_alone(url, bodies.take(args.requests)):,.0f} us")
        alone = urllib3_alone(url, bodies.take(args.requests), "application/x-ndjson")
        print(f"  urllib3 alone: {alone:,.0f} us")
        import urllib3

        urllib3.PoolManager().request("DELETE", f"{url}/{INDEX}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
