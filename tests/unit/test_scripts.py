"""The developer scripts in scripts/ (the suite's harness) without servers or podman."""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings
from pathlib import Path

import container

ROOT = Path(__file__).resolve().parents[2]


def test_container_base_closes_the_tar_pipe(monkeypatch):
    """base() pipes `tar` into `podman import`: no pipe is left for the garbage collector.

    The first `make test` on a machine builds the base image in the warm-up thread, and a
    pipe left open there was a ResourceWarning, which failed whichever test was running.
    Here debootstrap, chroot and podman are stand-ins; tar really runs.
    """
    imported = []

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        if args[0] == "debootstrap":  # a root file system of one file
            rootfs = Path(args[-2])
            (rootfs / "usr/local/share/ca-certificates").mkdir(parents=True)
            (rootfs / "hello").write_text("hello\n")
        elif args[:2] == ("podman", "import"):
            imported.append(kw["stdin"].read())
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(container, "image_exists", lambda name: False)
    monkeypatch.setattr(container, "_run", run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert container.base() == container.BASE_IMAGE
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert len(imported) == 1 and b"./hello" in imported[0]  # the tar of the root went to podman import
