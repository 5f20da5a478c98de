import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cdc.stream.checkpoint import FORMAT_VERSION, Checkpoint, FileCheckpointStore
from cdc.errors import CheckpointError
from cdc.model import BinlogPosition

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    s = FileCheckpointStore(tmp_path / "cp.json")
    yield s
    s.unlock()


def test_load_missing_is_none(store):
    assert store.load() is None


def test_save_load_round_trip_with_gtid(store):
    saved = store.save(BinlogPosition("binlog.000003", 157), "0-1-100")
    loaded = store.load()
    assert loaded == saved
    assert loaded.position == BinlogPosition("binlog.000003", 157)
    assert loaded.gtid == "0-1-100"
    assert loaded.saved_at > 0


def test_save_load_round_trip_without_gtid(store):
    store.save(BinlogPosition("mysql-bin.000010", 4), None)
    loaded = store.load()
    assert loaded.position == BinlogPosition("mysql-bin.000010", 4)
    assert loaded.gtid is None


def test_save_overwrites(store):
    store.save(BinlogPosition("binlog.000001", 100), "0-1-1")
    store.save(BinlogPosition("binlog.000002", 200), "0-1-2")
    loaded = store.load()
    assert loaded.position == BinlogPosition("binlog.000002", 200)
    assert loaded.gtid == "0-1-2"


def test_file_format(store):
    store.save(BinlogPosition("binlog.000003", 157), "0-1-100")
    data = json.loads(store.path.read_text())
    assert data["format"] == FORMAT_VERSION
    assert data["file"] == "binlog.000003"
    assert data["pos"] == 157
    assert data["gtid"] == "0-1-100"


def test_save_leaves_no_temp_files(tmp_path, store):
    for i in range(3):
        store.save(BinlogPosition("binlog.000001", 100 + i), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp.json"]


def test_save_into_missing_dir_is_checkpoint_error(tmp_path):
    store = FileCheckpointStore(tmp_path / "missing" / "cp.json")
    with pytest.raises(CheckpointError, match="cannot save checkpoint"):
        store.save(BinlogPosition("binlog.000001", 4), None)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("text", ["", "{", "not json", "{\"format\": 1,"])
def test_corrupt_file_names_path(store, text):
    store.path.write_text(text)
    with pytest.raises(CheckpointError) as info:
        store.load()
    assert str(store.path) in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_non_object_json(store):
    store.path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object") as info:
        store.load()
    assert str(store.path) in str(info.value)


@pytest.mark.parametrize("fmt", [None, 0, 3, "1"])
def test_wrong_format_version(store, fmt):
    data = {"file": "binlog.000001", "pos": 4, "gtid": None, "saved_at": 0}
    if fmt is not None:
        data["format"] = fmt
    store.path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unsupported checkpoint format") as info:
        store.load()
    assert str(store.path) in str(info.value)


def test_missing_key(store):
    store.path.write_text(json.dumps({"format": 1, "file": "binlog.000001"}))
    with pytest.raises(CheckpointError, match="missing key 'pos'"):
        store.load()


@pytest.mark.parametrize("file, pos", [("binlog.000001", 3), ("binlog.000001", "4"), (1, 4)])
def test_invalid_position(store, file, pos):
    store.path.write_text(json.dumps({"format": 1, "file": file, "pos": pos}))
    with pytest.raises(CheckpointError, match="invalid position"):
        store.load()


def test_gtid_must_be_string(store):
    store.path.write_text(json.dumps({"format": 1, "file": "binlog.000001", "pos": 4, "gtid": 5}))
    with pytest.raises(CheckpointError, match="gtid must be a string"):
        store.load()


@pytest.mark.parametrize("saved_at", [None, "yesterday"])
def test_bad_saved_at_is_checkpoint_error(store, saved_at):
    store.path.write_text(json.dumps({"format": 1, "file": "binlog.000001", "pos": 4, "gtid": None,
                                      "saved_at": saved_at}))
    with pytest.raises(CheckpointError):
        store.load()


def test_checkpoint_json_round_trip():
    cp = Checkpoint(BinlogPosition("binlog.000001", 4), "0-1-1", 12.5)
    assert Checkpoint.from_json(cp.to_json(), "x") == cp


# ---------------------------------------------------------------- locking
def test_second_store_cannot_lock(tmp_path):
    first = FileCheckpointStore(tmp_path / "cp.json")
    second = FileCheckpointStore(tmp_path / "cp.json")
    first.lock()
    try:
        with pytest.raises(CheckpointError, match="in use") as info:
            second.lock()
        assert f"pid {os.getpid()}" in str(info.value)
        assert second._lock_fd is None
    finally:
        first.unlock()
    second.lock()
    second.unlock()


def test_lock_writes_pid_and_creates_parent(tmp_path):
    store = FileCheckpointStore(tmp_path / "state" / "cp.json")
    store.lock()
    try:
        assert (tmp_path / "state" / "cp.json.lock").read_text() == str(os.getpid())
    finally:
        store.unlock()


def test_is_locked_by_other(tmp_path):
    holder = FileCheckpointStore(tmp_path / "cp.json")
    observer = FileCheckpointStore(tmp_path / "cp.json")
    assert observer.is_locked_by_other() is False  # no lock file yet
    holder.lock()
    try:
        assert observer.is_locked_by_other() is True
    finally:
        holder.unlock()
    assert observer.is_locked_by_other() is False
    # Looking does not take the lock.
    holder.lock()
    holder.unlock()


def test_unlock_twice_is_harmless(tmp_path):
    store = FileCheckpointStore(tmp_path / "cp.json")
    store.lock()
    store.unlock()
    store.unlock()


def test_lock_held_by_child_process(tmp_path):
    path = tmp_path / "cp.json"
    child_code = textwrap.dedent("""
        import sys
        from cdc.stream.checkpoint import FileCheckpointStore
        store = FileCheckpointStore(sys.argv[1])
        store.lock()
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "locked"
        parent = FileCheckpointStore(path)
        assert parent.is_locked_by_other() is True
        with pytest.raises(CheckpointError, match="in use") as info:
            parent.lock()
        assert f"pid {child.pid}" in str(info.value)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
    # The kernel released the lock when the child exited.
    parent = FileCheckpointStore(path)
    assert parent.is_locked_by_other() is False
    parent.lock()
    parent.unlock()


def test_snapshot_record_survives_stream_saves(store):
    store.snapshotted = ("db.a", "db.b")
    store.snapshot = {"db.c": {"last_key": [5], "rows": 5, "done": False}}
    store.save(BinlogPosition("binlog.000002", 100), "0-1-5")
    fresh = FileCheckpointStore(store.path)
    loaded = fresh.load()
    assert loaded is not None
    assert loaded.snapshotted == ("db.a", "db.b")
    assert loaded.snapshot == {"db.c": {"last_key": [5], "rows": 5, "done": False}}
    fresh.save(BinlogPosition("binlog.000002", 200), "0-1-6")  # a stream save keeps the record
    again = FileCheckpointStore(store.path).load()
    assert again is not None and again.snapshotted == ("db.a", "db.b")


def test_format_1_reads_as_snapshot_not_recorded(store):
    store.path.write_text(json.dumps({"format": 1, "file": "binlog.000001", "pos": 4, "gtid": None}))
    assert store.load().snapshotted is None
