"""Every error cdc raises, and whether trying again can help.

`retriable` is decided where the error is made (the library boundary knows what
a failure means); the pipeline alone decides what to do about it.
"""

from __future__ import annotations


class CdcError(Exception):
    """Base class. `retriable` errors are retried with backoff; others stop the daemon."""

    retriable = False


# -- set-up: exit code 2 ---------------------------------------------------------------
class ConfigError(CdcError):
    """The configuration or a rule file is invalid; the message names the file and key."""


class PreflightError(CdcError):
    """The server is not set up for CDC (binlog settings, privileges, schema)."""


# -- sources and sinks -------------------------------------------------------------------
class SourceError(CdcError):
    """Reading the binlog failed."""


class SourceConnectionError(SourceError):
    """The binlog connection dropped or timed out; reconnect from the last commit."""

    retriable = True


class SchemaChanged(SourceError):
    """A table's columns changed under a consistent read (an ALTER between planning and reading).

    Snapshots and `cdc verify` plan the table again and go on; nothing is lost.
    """


class PurgedPositionError(SourceError):
    """The position to resume from is no longer on the server (MySQL error 1236)."""


class UnsupportedEventError(SourceError):
    """The binlog holds something cdc cannot turn into documents without losing data."""


class SinkError(CdcError):
    """Writing to Elasticsearch failed."""


class SinkUnavailableError(SinkError):
    """Elasticsearch is unreachable, timing out or overloaded; send again later."""

    retriable = True


class SinkAccessError(SinkError):
    """Elasticsearch refused the credentials (401) or the role lacks a privilege (403).

    Never dead-lettered: every later document would be refused the same way, and
    only an operator can fix it. The daemon stops with the position unchanged.
    """

    def __init__(self, message: str, items: tuple = ()):
        super().__init__(message)
        self.items = items


class SinkCertificateError(SinkError):
    """Elasticsearch's TLS certificate failed verification (unknown CA, wrong host name, fingerprint).

    Not retried: trying again meets the same certificate; only an operator can fix it.
    """


class RequestTooLargeError(SinkError):
    """Elasticsearch refused the bulk body as too large (HTTP 413); split it and send again."""


class RejectedActionsError(SinkError):
    """Elasticsearch rejected documents for good (mapping errors and the like)."""

    def __init__(self, message: str, items: tuple = ()):
        super().__init__(message)
        self.items = items


class CheckpointError(CdcError):
    """The checkpoint cannot be read, written or locked."""


class DeadLetterError(CdcError):
    """The dead-letter file cannot be read or written."""


class ConversionError(CdcError, ValueError):
    """A column value cannot be turned into JSON."""
