"""Which search engine cdc writes to: Elasticsearch 8/9, Elasticsearch 7.17 or OpenSearch 2/3.

Pure: a server's answer to `GET /` (or, where `GET /` is not served, to a nodes
info request) in, an `Engine` out, and the checks that refuse an engine, a
version or a setting cdc does not support with it. cdc/es/destination.py asks,
and cdc/es/transport.py talks to the engine found (elasticsearch-py for
Elasticsearch 7.17, 8 and 9, opensearch-py for OpenSearch).

How an engine is told apart (docs/destinations.md "Destinations"):
* OpenSearch answers `GET /` with `version.distribution: "opensearch"`, also when
  `compatibility.override_main_response_version` makes it claim 7.10.2
  (OpenSearch's `MainResponse`, opensearch-project/OpenSearch server/src/main/java/
  org/opensearch/action/main/MainResponse.java).
* Elasticsearch >= 7.14 sends `X-Elastic-Product: Elasticsearch` on every response
  (elastic/elasticsearch PR #73434); `GET /` has no `distribution`. Since 8.9
  `GET /` lives in the rest-root module (PR #95881), which the integ-test-zip
  lacks: it answers 405 there, and the version comes from the nodes info API,
  which needs the same `monitor` cluster privilege as the health check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from cdc.errors import ConfigError, PreflightError

Product = Literal["elasticsearch", "opensearch"]
# What elasticsearch.engine accepts; auto takes what the server says it is.
ENGINE_CHOICES = ("auto", "elasticsearch", "opensearch")
# The nodes info request used when `GET /` is not served (ES >= 8.9 without rest-root).
NODES_VERSION_PATH = "/_nodes/_local?filter_path=nodes.*.version"
# Oldest versions cdc runs on. Elasticsearch 7.17 is the last 7.x (every earlier
# 7.x is end of life); OpenSearch 1.x is end of life and lacks unsigned_long.
MIN_VERSIONS: dict[Product, tuple[int, int]] = {"elasticsearch": (7, 17), "opensearch": (2, 0)}
# How logs and reports name each product.
PRODUCT_NAMES: dict[Product, str] = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}


@dataclass(frozen=True)
class Engine:
    product: Product
    version: str  # as the server reports it, e.g. "7.17.29", "2.19.1"

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", self.version)[:3]) or (0,)

    @property
    def major(self) -> int:
        return self.numbers[0]

    @property
    def name(self) -> str:
        return f"{PRODUCT_NAMES[self.product]} {self.version}"

    @property
    def legacy_media_type(self) -> bool:
        """Elasticsearch 7: the 8.x client must send 7's media type (cdc/es/transport.py, Elasticsearch7)."""
        return self.product == "elasticsearch" and self.major == 7


class UnknownServer(PreflightError):
    """The server is neither Elasticsearch nor OpenSearch, or does not say which version it is."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


def from_root(status: int, headers: Mapping[str, str], body: Any) -> Engine | None:
    """The engine from a `GET /` answer; None when it does not tell (not a 200: ask the nodes info API)."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("version"), dict):
        return None
    version = body["version"]
    number = str(version.get("number") or "")
    if version.get("distribution") == "opensearch":
        return Engine("opensearch", number)
    if _header(headers, "x-elastic-product") == "Elasticsearch":
        return Engine("elasticsearch", number)
    # Elasticsearch before 7.14 sent no product header; cdc refuses those versions anyway.
    if body.get("tagline") == "You Know, for Search":
        return Engine("elasticsearch", number)
    raise UnknownServer(f"the server at elasticsearch.hosts answered GET / with version {number!r} but is "
                        "neither Elasticsearch nor OpenSearch (no X-Elastic-Product header, no "
                        "version.distribution); cdc writes only to those (docs/destinations.md)")


def from_nodes(headers: Mapping[str, str], body: Any) -> Engine:
    """The engine from a nodes info answer (NODES_VERSION_PATH)."""
    nodes = body.get("nodes") if isinstance(body, dict) else None
    versions = sorted({str(n.get("version")) for n in (nodes or {}).values() if isinstance(n, dict)})
    if not versions:
        raise UnknownServer(f"the server did not say which version it runs (nodes info: {str(body)[:200]})")
    product: Product = "elasticsearch" if _header(headers, "x-elastic-product") == "Elasticsearch" else "opensearch"
    return Engine(product, versions[0])


def check_supported(engine: Engine, configured: str) -> None:
    """Refuse a version cdc does not support, and a server that is not the configured engine (exit code 2)."""
    if configured != "auto" and configured != engine.product:
        raise ConfigError(f"elasticsearch.engine is {configured}, but the server at elasticsearch.hosts is "
                          f"{engine.name}: set elasticsearch.engine: {engine.product} (or auto), or point "
                          "elasticsearch.hosts at the intended cluster")
    minimum = MIN_VERSIONS[engine.product]
    if engine.numbers[:2] < minimum:
        raise PreflightError(f"{engine.name} is not supported: cdc needs "
                             f"{PRODUCT_NAMES[engine.product]} "
                             f"{minimum[0]}.{minimum[1]} or later (docs/destinations.md)")


def refused_settings(engine: Engine | Product, api_key: bool) -> list[str]:
    """Settings the engine cannot honour, each with what to do instead; [] when all is well."""
    product = engine.product if isinstance(engine, Engine) else engine
    out = []
    if product == "opensearch" and api_key:
        # OpenSearch's security plugin has users, roles and client certificates,
        # but not Elasticsearch's API keys (the `ApiKey` Authorization scheme).
        out.append("elasticsearch.api_key: OpenSearch has no API keys; use username and password "
                   "(a user of the security plugin) instead")
    return out


def refuse(engine: Engine | Product, api_key: bool) -> None:
    problems = refused_settings(engine, api_key)
    if problems:
        name = engine.name if isinstance(engine, Engine) else "OpenSearch"
        raise ConfigError(f"{name}: " + "; ".join(problems))
