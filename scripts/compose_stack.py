#!/usr/bin/env python3
"""Run docker-compose.yml (and docker-compose.kafka.yml) with Docker Compose v2 on podman, without a registry.

    python3 scripts/compose_stack.py images       # the local images (cached; seconds when made)
    python3 scripts/compose_stack.py service      # podman's Docker API socket; prints DOCKER_HOST
    python3 scripts/compose_stack.py compose ARGS # docker compose ARGS against it, health checks run
    python3 scripts/compose_stack.py healthchecks # run the containers' health checks until Ctrl-C

A user with Docker and a registry runs `docker compose up --build` on the compose files
as they are. This machine has neither, so:

* Compose v2 itself is Debian unstable's `docker-compose` package (a Go binary linked only
  against libc, which runs on Debian 12): `apt-get download` with a private unstable source
  list, `dpkg-deb -x`, kept in CDC_DEV_HOME/compose. Set CDC_DOCKER_COMPOSE to use another.
* Its Docker API is `podman system service` on unix:///run/cdc-compose/podman.sock, a
  socket of its own (detached: it outlives this script), with a containers.conf of its own
  (CONTAINERS_CONF) for this host's two podman traps (docs/operations.md "Docker"): runc,
  since crun refuses the host's cgroup layout, and RLIMIT_NOFILE/NPROC no higher than the
  host's. Soft and hard limits are equal there: podman 4.3's Docker-compatible API swaps
  them ("nofile=1024:20000" reached runc as soft 20000 > hard 1024: "invalid argument").
* The images docker-compose.podman.yml and docker-compose.kafka.podman.yml name are built
  here from deploy/podman/ (each skipped when podman has it, built from the same inputs):
  MySQL 9.7 (the Debian unstable root scripts/servers.py makes for the test MySQL,
  imported without its data), Elasticsearch 8 (Maven Central's integ-test-zip, the one
  scripts/servers.py runs) and Kafka 4.1.1 (Maven Central's jars) on Debian 12's JRE 17,
  and a Rust image for the Dockerfile's native stage (this machine's toolchain copied in).
  cdc's own image is built by `docker compose build` from the Dockerfile, on the local
  base of scripts/container.py.
* podman 4.3's Docker-compatible API names a container's network by its name where Docker
  gives its ID (NetworkSettings.Networks[...].NetworkID), so Compose 2.40 takes every
  *running* container of the project for one on the wrong network and recreates it on
  each `up`: harmless for this stack (its state is in volumes; cdc resumes from its
  checkpoint), but an `up` restarts MySQL and Elasticsearch if they were running.
* Nothing runs health checks on their interval here: podman 4.3 schedules them with
  systemd timers, and this machine has no systemd, so a container stays "starting" and
  compose's `depends_on: condition: service_healthy` would wait for ever. `compose` (and
  `healthchecks`) run each running compose container's check every `interval` of its own,
  as the timer would, with `podman healthcheck run`.

The build cost, measured on this machine (2 shared cores): everything from nothing (but
the Debian roots scripts/servers.py and scripts/container.py keep) about 2 minutes; with
the images made, `images` takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import container  # noqa: E402  (scripts/container.py: the local Debian base, podman's traps)
import kafka_broker  # noqa: E402
import servers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PODMAN_DIR = ROOT / "deploy" / "podman"
HOME = servers.HOME / "compose"
SOCKET = Path(os.environ.get("CDC_COMPOSE_SOCKET", "/run/cdc-compose/podman.sock"))
DOCKER_HOST = f"unix://{SOCKET}"
ES_VERSION: str = servers.ES_VERSIONS["8"] or "8.19.21"
KAFKA_VERSION = kafka_broker.KAFKA_VERSION

JRE_IMAGE = "localhost/cdc-compose-jre:17"
SID_IMAGE = "localhost/cdc-compose-sid:mysql"
MYSQL_IMAGE = "localhost/cdc-compose-mysql:9.7"
ES_IMAGE = f"localhost/cdc-compose-elasticsearch:{ES_VERSION}"
KAFKA_IMAGE = f"localhost/cdc-compose-kafka:{KAFKA_VERSION}"
RUST_IMAGE = "localhost/cdc-compose-rust:local"
INPUTS_LABEL = "cdc.compose.inputs"

CONTAINERS_CONF = """\
# podman system service for scripts/compose_stack.py (see its docstring).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""

KAFKA_POM = """\
<project><modelVersion>4.0.0</modelVersion>
 <groupId>local</groupId><artifactId>cdc-compose-kafka</artifactId><version>1</version>
 <dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>
  <!-- kafka-topics.sh, the compose file's health check -->
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{version}</version></dependency>
  <!-- the broker logs through SLF4J: to log4j2's console (otherwise nothing is logged) -->
  <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
 </dependencies>
</project>
"""


class StackError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[compose] {msg}", file=sys.stderr, flush=True)


def available() -> str | None:
    """None if the stack can be built and run here, else why not (for a test skip)."""
    why = container.available()
    if why:
        return why
    for tool in ("apt-get", "dpkg-deb", "mvn"):
        if shutil.which(tool) is None:
            return f"not installed: {tool}"
    if not Path("/usr/lib/cni/dnsname").exists() and _network_backend() == "cni":
        # Without it the compose network has no DNS: cdc could not reach `mysql` by name.
        return ("podman's CNI networks need the dnsname plugin for service names: "
                "apt-get install golang-github-containernetworking-plugin-dnsname (scripts/install-system-deps.sh)")
    return None


def _network_backend() -> str:
    return subprocess.run(["podman", "info", "--format", "{{.Host.NetworkBackend}}"], capture_output=True,
                          text=True).stdout.strip()


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise StackError(f"{' '.join(args[:4])} ... failed ({result.returncode}):\n"
                         f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result


# ---------------------------------------------------------------- Compose v2 and podman's API
def compose_binary() -> Path:
    """Docker Compose v2: CDC_DOCKER_COMPOSE, else Debian unstable's package, fetched once."""
    if os.environ.get("CDC_DOCKER_COMPOSE"):
        return Path(os.environ["CDC_DOCKER_COMPOSE"])
    binary = HOME / "docker-compose"
    if binary.is_file():
        return binary
    apt = HOME / "apt"
    for sub in ("lists/partial", "archives/partial", "etc"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc/sources.list").write_text(f"deb {container._mirror()} sid main\n")
    # A private source list, lists and cache: the host's apt is not told about unstable.
    options = [f"-oDir::Etc::SourceList={apt / 'etc/sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache::Archives={apt / 'archives'}",
               "-oAPT::Sandbox::User=root"]
    log("fetching Debian unstable's docker-compose package (once)")
    _run("apt-get", *options, "-q", "update")
    with tempfile.TemporaryDirectory(dir=HOME) as tmp:
        _run("apt-get", *options, "-q", "download", "docker-compose", cwd=tmp)
        [deb] = Path(tmp).glob("docker-compose_*.deb")
        _run("dpkg-deb", "-x", str(deb), f"{tmp}/x")
        shutil.copy(f"{tmp}/x/usr/libexec/docker/cli-plugins/docker-compose", f"{binary}.partial")
    os.replace(f"{binary}.partial", binary)
    log(f"{_run(str(binary), 'version').stdout.strip()} in {binary}")
    return binary


def _api_answers() -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(SOCKET))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return sock.recv(64).split(b"\r\n")[0].endswith(b" 200 OK")
    except OSError:
        return False


def _stale_service() -> bool:
    """The running service's working directory is gone (a checkout or clone removed since it started):
    conmon, which it starts in that directory, then fails ("Failed to get working directory") and every
    container start answers "write child: broken pipe". Stopped here, it is started again below."""
    try:
        pid = int((HOME / "service.pid").read_text())
        if not os.readlink(f"/proc/{pid}/cwd").endswith(" (deleted)"):
            return False
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + 30
    while _api_answers() and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def service() -> str:
    """podman's Docker API on SOCKET, started (detached) unless it answers; returns DOCKER_HOST."""
    if _api_answers() and not _stale_service():
        return DOCKER_HOST
    HOME.mkdir(parents=True, exist_ok=True)
    conf = HOME / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    SOCKET.unlink(missing_ok=True)
    log(f"starting podman system service on {DOCKER_HOST}")
    # Detached through a shell that exits at once: the service is init's child, not this process's, so
    # no Popen is left to warn "still running" when a test's interpreter lets go of it (a ResourceWarning
    # that pytest turns into a failure), and nothing waits to reap it. cwd "/": the service outlives the
    # checkout that started it (see _stale_service).
    launched = subprocess.run(
        ["sh", "-c", 'exec "$@" </dev/null >>"$SERVICE_LOG" 2>&1 & echo $!', "sh",
         "podman", "system", "service", "--time=0", DOCKER_HOST],
        env={**os.environ, "CONTAINERS_CONF": str(conf), "SERVICE_LOG": str(HOME / "service.log")},
        capture_output=True, text=True, start_new_session=True, cwd="/", check=True)
    pid = int(launched.stdout)
    (HOME / "service.pid").write_text(f"{pid}\n")
    deadline = time.monotonic() + 30
    while not _api_answers():
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            raise StackError(f"podman system service did not answer on {SOCKET}; see {HOME / 'service.log'}")
        time.sleep(0.2)
    return DOCKER_HOST


def compose_env() -> dict[str, str]:
    """The environment `docker compose` needs here, besides the user's."""
    return {
        "DOCKER_HOST": service(),
        # podman's API has no BuildKit (without this, compose pulls moby/buildkit to run one): the
        # classic builder, which is podman's buildah, builds the Dockerfile, `RUN --mount=type=cache` included.
        "DOCKER_BUILDKIT": "0",
    }


# ---------------------------------------------------------------- health checks, as systemd's timers would run them
class HealthChecks:
    """Runs the health check of each running container of `project` (all compose projects if None) every
    `interval` of its own, in a thread, until stopped. Records when the first check of each container that
    passed began (`first_passed`, a time.time(); `reset` forgets them): compose cannot have seen the container
    healthy before then."""

    def __init__(self, project: str | None = None):
        self.project = project
        self.first_passed: dict[str, float] = {}  # container name -> time.time() its first passing check began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="healthchecks", daemon=True)
        self._due: dict[str, float] = {}

    def __enter__(self) -> HealthChecks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def reset(self) -> None:
        self.first_passed = {}

    def _containers(self) -> dict[str, float]:
        """Running containers with a health check: name -> interval in seconds."""
        label = f"com.docker.compose.project={self.project}" if self.project else "com.docker.compose.project"
        names = subprocess.run(["podman", "ps", "--filter", f"label={label}", "--format", "{{.Names}}"],
                               capture_output=True, text=True).stdout.split()
        if not names:
            return {}
        out = subprocess.run(["podman", "inspect", "--format", "json", *names], capture_output=True, text=True)
        found = {}
        for info in json.loads(out.stdout or "[]"):
            check = info.get("Config", {}).get("Healthcheck") or {}
            if check.get("Test") and check["Test"][0] != "NONE":
                found[info["Name"]] = max(1.0, (check.get("Interval") or 30e9) / 1e9)
        return found

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for name, interval in self._containers().items():
                if now < self._due.get(name, 0):
                    continue
                self._due[name] = now + interval
                began = time.time()
                passed = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True).returncode == 0
                if passed and name not in self.first_passed:
                    self.first_passed[name] = began


def compose(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    """`docker compose ARGS` with this machine's environment (not checked: the caller reads the result)."""
    return subprocess.run([str(compose_binary()), *args], cwd=cwd, env={**os.environ, **compose_env(), **(env or {})},
                          **kw)


# ---------------------------------------------------------------- the local images
def _inputs(*parts: object) -> str:
    """A digest of an image's inputs: its deploy/podman files and whatever else names its content."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_dir():
            for path in sorted(p for p in part.rglob("*") if p.is_file()):
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        else:
            digest.update(str(part).encode() + b"\0")
    return digest.hexdigest()[:16]


def _current(image: str, inputs: str) -> bool:
    result = subprocess.run(["podman", "image", "inspect", "--format", f'{{{{index .Labels "{INPUTS_LABEL}"}}}}',
                             image], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == inputs


def _build(image: str, context: Path, inputs: str, *extra: str) -> None:
    log(f"building {image}")
    began = time.monotonic()
    # The label names the inputs (`_current`); PODMAN_FLAGS: this host's traps for the RUN steps.
    _run("podman", "build", "--format", "docker", *container.PODMAN_FLAGS, "--network", "host",
         "--label", f"{INPUTS_LABEL}={inputs}", *extra, "-t", image, str(context))
    log(f"built {image} in {time.monotonic() - began:.0f}s")


def jre_image() -> str:
    base = container.base()
    inputs = _inputs(PODMAN_DIR / "jre", base)
    if not _current(JRE_IMAGE, inputs):
        _build(JRE_IMAGE, PODMAN_DIR / "jre", inputs, "--build-arg", f"BASE={base}")
    return JRE_IMAGE


def mysql_image() -> str:
    root = servers.sid_root()
    version = (root / servers._SID_READY).read_text().strip()
    sid_inputs = _inputs(version)
    if not _current(SID_IMAGE, sid_inputs):
        # The root the test MySQL runs from, without that server's data directories (var/lib/cdc-*).
        log(f"importing {root} as {SID_IMAGE}")
        excludes = [f"--exclude=./var/lib/{path.name}" for path in (root / "var/lib").glob("cdc-*")]
        with subprocess.Popen(["tar", "-C", str(root), *excludes, f"--exclude=./{servers._SID_READY}", "-c", "."],
                              stdout=subprocess.PIPE) as tar:
            _run("podman", "import", "--change", f"LABEL {INPUTS_LABEL}={sid_inputs}",
                 "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "-", SID_IMAGE, stdin=tar.stdout)
    inputs = _inputs(PODMAN_DIR / "mysql", sid_inputs)
    if not _current(MYSQL_IMAGE, inputs):
        _build(MYSQL_IMAGE, PODMAN_DIR / "mysql", inputs, "--build-arg", f"BASE={SID_IMAGE}")
    return MYSQL_IMAGE


def _context(name: str, source: Path) -> Path:
    """A build context under HOME: `source`'s files (and whatever the caller links in beside them)."""
    context = HOME / f"context-{name}"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(source, context)
    return context


def es_image() -> str:
    jre = jre_image()
    inputs = _inputs(PODMAN_DIR / "elasticsearch", ES_VERSION, jre, _image_id(jre))
    if not _current(ES_IMAGE, inputs):
        zip_path = servers._es_zip(ES_VERSION)
        context = _context("elasticsearch", PODMAN_DIR / "elasticsearch")
        os.link(zip_path, context / zip_path.name) if _same_fs(zip_path, context) else shutil.copy(zip_path, context)
        _build(ES_IMAGE, context, inputs, "--build-arg", f"BASE={jre}", "--build-arg", f"ES_VERSION={ES_VERSION}")
    return ES_IMAGE


def _kafka_libs() -> Path:
    libs = HOME / f"kafka-libs-{KAFKA_VERSION}"
    if libs.is_dir():
        return libs
    pom = HOME / f"kafka-pom-{KAFKA_VERSION}"
    pom.mkdir(parents=True, exist_ok=True)
    (pom / "pom.xml").write_text(KAFKA_POM.format(version=KAFKA_VERSION))
    log(f"fetching Kafka {KAFKA_VERSION}'s jars from Maven Central (once)")
    partial = HOME / f".kafka-libs-{KAFKA_VERSION}"
    shutil.rmtree(partial, ignore_errors=True)
    _run("mvn", "-q", "-B", "-f", str(pom / "pom.xml"),
         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={partial}")
    partial.rename(libs)
    return libs


def kafka_image() -> str:
    jre = jre_image()
    inputs = _inputs(PODMAN_DIR / "kafka", KAFKA_POM.format(version=KAFKA_VERSION), jre, _image_id(jre))
    if not _current(KAFKA_IMAGE, inputs):
        libs = _kafka_libs()
        context = _context("kafka", PODMAN_DIR / "kafka")
        shutil.copytree(libs, context / "libs", copy_function=os.link)
        _build(KAFKA_IMAGE, context, inputs, "--build-arg", f"BASE={jre}")
    return KAFKA_IMAGE


def rust_image() -> str | None:
    """The Dockerfile's RUST stage: the builder image with this machine's toolchain; None without one."""
    toolchain = container.rust_toolchain()
    if toolchain is None:
        return None
    builder = container.builder()
    version = _run(str(toolchain / "bin" / "rustc"), "--version").stdout.strip()
    inputs = _inputs(PODMAN_DIR / "rust", version, builder)
    if not _current(RUST_IMAGE, inputs):
        _build(RUST_IMAGE, PODMAN_DIR / "rust", inputs, "--build-arg", f"BASE={builder}",
               "--volume", f"{toolchain}:/mnt/rust:ro")
    return RUST_IMAGE


def _image_id(image: str) -> str:
    return _run("podman", "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def images(kafka: bool = True) -> dict[str, str]:
    """Every image the podman override files name (built unless current), and the variables naming them."""
    began = time.monotonic()
    HOME.mkdir(parents=True, exist_ok=True)
    names = {
        "CDC_COMPOSE_BASE_IMAGE": container.base(),
        "CDC_COMPOSE_MYSQL_IMAGE": mysql_image(),
        "CDC_COMPOSE_ES_IMAGE": es_image(),
    }
    rust = rust_image()
    # Without a toolchain the native stage runs on the base, which has no cargo: the image gets
    # the Python row path (as scripts/container.py's does).
    names["CDC_COMPOSE_RUST_IMAGE"] = rust or names["CDC_COMPOSE_BASE_IMAGE"]
    if kafka:
        names["CDC_COMPOSE_KAFKA_IMAGE"] = kafka_image()
    log(f"images ready in {time.monotonic() - began:.0f}s")
    return names


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    why = available()
    if why:
        log(why)
        return 2
    try:
        if command == "images":
            for name, image in images().items():
                print(f"{name}={image}")
        elif command == "service":
            print(f"DOCKER_HOST={service()}")
        elif command == "healthchecks":
            service()
            with HealthChecks():
                log("running the compose containers' health checks (Ctrl-C stops)")
                threading.Event().wait()
        elif command == "compose":
            with HealthChecks():
                return compose(*argv[2:], env=images()).returncode
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except StackError as exc:
        log(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
