"""scripts/servers.py cleans up after itself (issue 16: /tmp kept a new elasticsearch-<random>
directory from every start). A throwaway node beside the shared one; the shared servers are untouched."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from harness import free_port


def test_elasticsearch_uses_its_own_temp_directory_and_leaves_none_in_tmp(servers):
    import servers as dev

    run_dir = dev.HOME / f"es-tmpdir-check-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    try:
        dev._es_start(servers.es_version, run_dir, free_port(), free_port(), "cdc-tmpdir-check",
                      ["-Expack.security.enabled=false"])
        pid = (run_dir / "es.pid").read_text().strip()
        java_args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        # The launcher hands ES_TMPDIR to the JVM as java.io.tmpdir: nothing goes to /tmp.
        assert f"-Djava.io.tmpdir={run_dir / 'tmp'}".encode() in java_args
        assert (run_dir / "tmp").is_dir()
        dev._stop_pid(run_dir / "es.pid", "elasticsearch (tmpdir check)")
    finally:
        if (run_dir / "es.pid").exists():
            dev._stop_pid(run_dir / "es.pid", "elasticsearch (tmpdir check)")
        shutil.rmtree(run_dir, ignore_errors=True)
