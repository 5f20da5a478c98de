"""Logging set-up: readable lines on a terminal, JSON lines when asked or when not on one.

JSON records carry stable field names (ts, level, logger, msg, and any of
the FIELDS below passed via `extra=`). Lines that mark a step of a run also
carry `event`, a name that does not change when the wording does; monitoring
and the tests match on it, not on the sentence:

    start           where streaming starts (`how`: resume, fresh, failover; `position`)
    snapshot_done   an initial or on-demand snapshot finished (`rows`)
    stopped         the last line of a run (`rows`, `transactions`, `actions`, `position`)
    reconnect       the binlog connection was lost; cdc reconnects from the last commit
    retry           a bulk request or some of its items failed and go again (`actions`)
    dead_letter     a document was set aside (`doc_id`, `index`, `position`, `error`)
"""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

FIELDS = ("event", "how", "table", "position", "gtid", "doc_id", "index", "error", "lag_seconds", "server_id",
          "rows", "transactions", "actions", "targets", "row_path", "roots")
# Belt and braces: never print a password or API key even if a library puts one in a message
# (an Authorization header's scheme is taken with its credentials). Except MySQL's "Access denied
# for user 'cdc'@'host' (using password: YES)": YES/NO only say whether a password was sent, and
# without them the reason for a refused login is cut short.
_SECRET = re.compile(r"(?i)(password|passwd|api_key|apikey|authorization)(['\"]?\s*[:=]\s*['\"]?)"
                     r"(?!(?-i:YES|NO)\)(?![^'\"\s,}]))(?:(?:Basic|Bearer|ApiKey)\s+)?([^'\"\s,}]+)")


def redact(text: str) -> str:
    return _SECRET.sub(r"\1\2***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name in FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("cdc").setLevel(level)
    # Libraries speak through `warnings` too (the Elasticsearch client relays the
    # server's deprecation warnings, e.g. a role that ES 9 will no longer accept);
    # they belong in the same log stream, in the same format.
    logging.captureWarnings(True)
