#!/usr/bin/env python3
"""Build and run cdc's container image with podman, on a machine without a registry.

    python3 scripts/container.py base    # the local Debian base and builder images (cached)
    python3 scripts/container.py build   # the cdc image from ./Dockerfile on that base

Users build the Dockerfile unchanged on its public base (docker.io/library/python:3.11-slim).
Here no image registry is reachable, so the tests build it on a base made
locally from Debian's packages: `debootstrap --variant=minbase bookworm` with
python3 and a venv at /usr/local/python (on PATH, as python:3.11-slim has
python and pip on PATH), imported with `podman import`. The base also trusts
this machine's extra CA certificates (/usr/local/share/ca-certificates), which
the package proxy of this network needs for the build's `pip wheel`.

The base is built once and kept in podman's store (about a minute); `base`
does nothing when the image exists. The Dockerfile's native stage compiles the
native row path with `RUST` (docker.io/library/rust:1-slim-bookworm for users); here that is the
base plus gcc from Debian, with this machine's Rust toolchain mounted read-only
at /opt/rust for the build (no Rust image can be pulled, and Debian's rustc is
too old for the crate's lock file). Without a toolchain on the host the image
is built without the native path and runs the Python one. Two traps of this machine are handled by
the flags in `PODMAN_FLAGS` (docs/operations.md "Docker", tested with podman 4.3.1):
crun refuses the host's cgroup layout, so runc runs the containers; and
containers may not raise RLIMIT_NOFILE above the host's, so the limits are given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/cdc-base:bookworm-python3.11"
BUILDER_IMAGE = "localhost/cdc-builder:bookworm"
IMAGE = "localhost/cdc:test"
PODMAN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:4096"]
_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
_PATH = "/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[container] {msg}", file=sys.stderr, flush=True)


def available() -> str | None:
    """None if podman can build and run here, else why not (for a test skip)."""
    missing = [tool for tool in ("podman", "debootstrap", "runc") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (scripts/install-system-deps.sh installs them)"
    if os.geteuid() != 0:
        return "debootstrap needs root to make the local base image"
    return None


def _mirror() -> str:
    """The Debian mirror apt uses here (the only one reachable)."""
    if _SOURCES.exists():
        for line in _SOURCES.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise ContainerError(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name]).returncode == 0


def base() -> str:
    """Make the local base image unless podman already has it; returns its name."""
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    log(f"making {BASE_IMAGE} with debootstrap (about a minute, once)")
    with tempfile.TemporaryDirectory(prefix="cdc-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs), _mirror())
        extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        for cert in extra:
            shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        if extra:
            _run("chroot", str(rootfs), "update-ca-certificates")
        _run("chroot", str(rootfs), "python3", "-m", "venv", "/usr/local/python")
        # The with closes tar's end of the pipe here and waits for tar (an open pipe left to the
        # garbage collector was a ResourceWarning, an error in whichever test then ran).
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            _run("podman", "import", "--change", f"ENV PATH={_PATH}", "-", BASE_IMAGE, stdin=tar.stdout)
    return BASE_IMAGE


def builder() -> str:
    """The native stage's image: the base with a C linker (Rust itself is mounted, see `rust_toolchain`)."""
    if image_exists(BUILDER_IMAGE):
        return BUILDER_IMAGE
    log(f"making {BUILDER_IMAGE}: {BASE_IMAGE} with gcc")
    with tempfile.TemporaryDirectory(prefix="cdc-builder-") as tmp:
        (Path(tmp) / "Containerfile").write_text(
            f"FROM {base()}\n"
            "RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev"
            " && rm -rf /var/lib/apt/lists/*\n")
        _run("podman", "build", *PODMAN_FLAGS, "--network", "host", "-t", BUILDER_IMAGE, tmp)
    return BUILDER_IMAGE


def rust_toolchain() -> Path | None:
    """This machine's Rust toolchain directory (bin/cargo, bin/rustc, lib/rustlib), if it has one."""
    rustc = shutil.which("rustc") or str(Path.home() / ".cargo/bin/rustc")
    try:
        sysroot = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
    except OSError:
        return None
    return Path(sysroot) if sysroot and (Path(sysroot) / "bin" / "cargo").exists() else None


def build(tag: str = IMAGE) -> str:
    """Build ./Dockerfile on the local base; returns the image name."""
    base_image = base()
    args = ["--build-arg", f"BASE={base_image}"]
    toolchain = rust_toolchain()
    if toolchain is not None:
        args += ["--build-arg", f"RUST={builder()}", "--volume", f"{toolchain}:/opt/rust:ro"]
    else:  # the base has no cargo: the native stage builds nothing (and pulls no Rust image)
        args += ["--build-arg", f"RUST={base_image}"]
        log("no Rust toolchain here: the image gets the Python row path only")
    log(f"building {tag} from {ROOT / 'Dockerfile'}")
    # --format docker keeps HEALTHCHECK (the OCI format has no such field).
    command = ["podman", "build", "--format", "docker", *PODMAN_FLAGS, "--network", "host", *args]
    # The two build stages first, each tagged: a tag keeps their layers out of `image prune`,
    # so the next build finds them in its cache.
    for stage in ("native", "build"):
        _run(*command, "--target", stage, "-t", f"{tag.rsplit(':', 1)[0]}-stage-{stage}:latest", str(ROOT))
    _run(*command, "-t", tag, str(ROOT))
    # The previous image of this tag and its layers stay behind untagged: 300 MB a build.
    _run("podman", "image", "prune", "-f")
    return tag


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    why = available()
    if why:
        log(why)
        return 2
    try:
        if command == "base":
            print(base())
            print(builder())
        elif command == "build":
            print(build())
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ContainerError as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
