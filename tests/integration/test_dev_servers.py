"""scripts/servers.py cleans up after itself (issue 16: /tmp kept a new elasticsearch-<random>
directory from every start). Read off the test Elasticsearch as `servers.py up` started it: a
throwaway node of its own cost 7-19 s of start-up on the 2-core machine and proved nothing more."""

from __future__ import annotations

from pathlib import Path


def test_elasticsearch_uses_its_own_temp_directory_and_leaves_none_in_tmp(servers):
    import servers as dev

    _, run_dir = dev.es_dirs(servers.es_version)
    pid = (run_dir / "es.pid").read_text().strip()  # the JVM's (`elasticsearch -d -p`)
    java_args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    # The launcher hands ES_TMPDIR to the JVM as java.io.tmpdir: nothing goes to /tmp.
    assert f"-Djava.io.tmpdir={run_dir / 'tmp'}".encode() in java_args
    assert (run_dir / "tmp").is_dir()
