"""The stages every command shares (cdc/app/session.py): start-up waits and the writability check."""

import threading

import pytest

from cdc.app.session import check_writable, patiently, writable_problems
from cdc.config import RetryConfig
from cdc.errors import CdcError, ConfigError, PreflightError, SinkUnavailableError, SourceConnectionError

RETRY = RetryConfig(initial_backoff=0.001, max_backoff=0.001, max_attempts=None)


@pytest.mark.parametrize("error", [SourceConnectionError("down"), SinkUnavailableError("503")])
def test_start_up_waits_out_what_the_error_says_is_retriable(error):
    calls = []

    def connect():
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "connected"

    assert error.retriable
    assert patiently("connecting", connect, threading.Event(), RETRY) == "connected" and len(calls) == 3


@pytest.mark.parametrize("error", [PreflightError("binlog_format=STATEMENT"), CdcError("other")])
def test_anything_not_retriable_stops_at_once(error):
    calls = []

    def connect():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        patiently("connecting", connect, threading.Event(), RETRY)
    assert len(calls) == 1


def test_max_attempts_is_the_budget():
    def down():
        raise SourceConnectionError("down")

    with pytest.raises(SourceConnectionError):
        patiently("connecting", down, threading.Event(), RETRY.model_copy(update={"max_attempts": 2}))


def test_writable_paths_are_created_or_named(tmp_path):
    check_writable({"checkpoint.path": tmp_path / "new" / "dir" / "cp.json"})
    assert (tmp_path / "new" / "dir").is_dir()
    assert list((tmp_path / "new" / "dir").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as info:
        check_writable({"checkpoint.path": blocker / "cp.json", "dead_letter.path": tmp_path / "dl.jsonl"})
    assert info.value.exit_code == 2
    message = str(info.value)
    assert f"checkpoint.path: cannot write {blocker / 'cp.json'}" in message and "dead_letter.path: cannot" not in message
    assert "state_dir" in message and "$STATE_DIRECTORY" in message
    # Without creating anything: the nearest existing parent decides.
    assert writable_problems({"checkpoint.path": tmp_path / "not" / "yet" / "cp.json"}, create=False) == []
    assert not (tmp_path / "not").exists()
