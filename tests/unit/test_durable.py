"""atomic_write: old or new content, never torn; the file and its directory are synced."""

import os
import stat

import pytest

import cdc.durable
from cdc.durable import atomic_write


def test_replaces_the_content_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    atomic_write(path, '{"new": true}')
    assert path.read_text() == '{"new": true}'
    atomic_write(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_mode_is_kept_for_private_files(tmp_path):
    atomic_write(tmp_path / "letters.jsonl", "x", 0o600)
    assert stat.S_IMODE((tmp_path / "letters.jsonl").stat().st_mode) == 0o600


def test_syncs_the_file_then_the_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(cdc.durable.os, "fsync", fsync)
    atomic_write(tmp_path / "cp.json", "{}")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".cp.json.")) and synced[1] == str(tmp_path)


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "cp.json"
    path.write_text("old")

    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cdc.durable.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp.json"]
