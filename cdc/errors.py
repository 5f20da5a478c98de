"""Every error cdc raises, whether trying again can help, and the exit code it ends a command with.

`retriable` is decided where the error is made (the library boundary knows what
a failure means). The start-up waits (cdc/app/session.py `patiently`) read it;
the pipeline's writer and the binlog reader catch the retriable classes by name.

`exit_code` is what a command exits with when the error stops it (cdc/cli.py
reads it; docs/troubleshooting.md "Exit codes", and systemd's RestartPreventExitStatus=2 3):

  0  not a failure: a stop signal came while a command waited at start-up (`Stopped`)
  1  a runtime error; the checkpoint is safe, a restart may help
  2  configuration, rules or set-up: fix it and start again (a restart cannot help)
  3  the resume position is gone from the server (binlog purged): re-snapshot
"""

from __future__ import annotations


class CdcError(Exception):
    """Base class. `retriable` errors are retried with backoff; others stop the daemon."""

    retriable = False
    exit_code = 1


class Stopped(CdcError):
    """A stop signal (SIGTERM/SIGINT) came while a command waited at start-up, e.g. for an unreachable server.

    Raised to leave the start-up from wherever it waits; a signal is a normal stop
    (exit 0, logged at info), as it is once streaming, and systemd must not count it
    as a failure.
    """

    exit_code = 0


# -- set-up: exit code 2 ---------------------------------------------------------------
class ConfigError(CdcError):
    """The configuration or a rule file is invalid; the message names the file and key."""

    exit_code = 2


class PreflightError(CdcError):
    """The server is not set up for CDC (binlog settings, privileges, schema)."""

    exit_code = 2


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

    exit_code = 3


class StartPositionError(SourceError):
    """The server cannot read the binlog at the start position: it is not the start of an event, or its
    file was never on this server (newer than the newest, or named otherwise: cdc/app/start.py never_on_server).

    Bad input (a replay's --from-position, start.position, a checkpoint of another server), not a
    purged binlog: retrying or restarting meets the same position, and a re-snapshot is no fix.
    """

    exit_code = 2


class UnsupportedEventError(SourceError):
    """The binlog holds something cdc cannot turn into documents without losing data."""


class SinkError(CdcError):
    """Writing to Elasticsearch failed."""

    # What the search cluster answered, when it did (cdc/es/statuses.py `http_error`): the HTTP status and
    # the answer's `error.type` (e.g. "resource_already_exists_exception"), for a caller that expects
    # one answer; never matched in the message's text.
    status: int | None = None
    error_type: str | None = None


class SinkUnavailableError(SinkError):
    """Elasticsearch is unreachable, timing out or overloaded; send again later."""

    retriable = True


class RetryAbandoned(SinkUnavailableError):
    """A writer stopped waiting to retry because another one failed or its work was taken away
    (`BulkWriter.abort`): not a failure of its own, and nothing it held was acknowledged."""


class SinkAccessError(SinkError):
    """Elasticsearch refused the credentials (401) or the role lacks a privilege (403).

    Never dead-lettered: every later document would be refused the same way, and
    only an operator can fix it. The daemon stops with the position unchanged.
    """

    exit_code = 2

    def __init__(self, message: str, items: tuple = ()):
        super().__init__(message)
        self.items = items


class SinkCertificateError(SinkError):
    """Elasticsearch's TLS certificate failed verification (unknown CA, wrong host name, fingerprint).

    Not retried: trying again meets the same certificate; only an operator can fix it.
    """

    exit_code = 2


class RequestTooLargeError(SinkError):
    """Elasticsearch refused the bulk body as too large (HTTP 413); split it and send again."""


class RejectedActionsError(SinkError):
    """Elasticsearch rejected documents for good (mapping errors and the like)."""

    def __init__(self, message: str, items: tuple = ()):
        super().__init__(message)
        self.items = items


class CheckpointError(CdcError):
    """The checkpoint cannot be read, written or locked (or another daemon holds it)."""

    exit_code = 2


class DeadLetterError(CdcError):
    """The dead-letter file cannot be read or written."""


class ConversionError(CdcError, ValueError):
    """A column value cannot be turned into a document field; carries the column name and why."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column
        self.reason = reason


class RowError(CdcError, ValueError):
    """A row cannot be turned into actions; the message names the table, the row and the column."""
