"""No secret leaks (issue 33): passwords and API keys appear in no output of cdc, working or failing.

cdc is given distinctive secrets, through each way the config takes them (`${VAR}`, a
`*_file`, a literal, and the userinfo of an `https://user:password@host` URL), and runs
its commands against the real servers: `run` (text and JSON logs, at DEBUG), `status`
(text and `--json`), `check` (text, `--json`, `--offline`), `dlq` (`list`, `show`,
`retry`), `verify` and `init`. Then through faults: a wrong Elasticsearch password, an
API key the server refuses, a wrong MySQL password, a certificate from another CA, and
Elasticsearch unreachable while the daemon writes (the writer waits, and /metrics, /readyz
and `cdc status` say why). A rejected document (a mapping conflict, with
`dead_letter.on_rejected: dead_letter`) makes a dead letter, so the dead-letter store,
`cdc dlq` and the dead-letter log lines have something to say.

Every secret is searched for, as a substring, in everything cdc printed or wrote:
stdout and stderr of every command, the daemon's logs, /metrics, /healthz and /readyz
of a running daemon, every file in the state directories (checkpoint, dead letters and
their locks) and the files `cdc init` wrote. A secret is searched for as
itself, as its random part alone (a value cut short by a redaction that stopped at a
quote or a comma still leaks that), percent-encoded as in a URL, and as what goes on
the wire: the base64 of `user:password` of basic authentication, and for the API key
both its `id:key` form and the base64 of it that the Authorization header carries.

Elasticsearch is the secured node of tests/integration/es_secure_node.py (shared with
test_es_security.py); MariaDB is the shared server, with a replication user of this
module's own. The secured node cannot make API keys (es_secure_node.py says why), so
the API key is one the server does not know: every request with it is refused with
401: an error about the credentials is where a key is likeliest to be printed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from es_secure_node import PASSWORDS, SECURE_ES
from harness import Admin, CdcSetup, es_docs, free_port
from proxy import FaultProxy

WARM_UP = {"secure_es": SECURE_ES}  # tests/conftest.py

ES_USER = "secrets"  # es_secure_node.py: role cdc_verify (writes, and reads for `cdc verify`)
ES_PASSWORD = PASSWORDS[ES_USER]


def _random() -> str:
    return uuid.uuid4().hex[:12]


# Each secret has a random part of its own (`_random`), found nowhere else, and the
# characters that end a value in the log redaction's pattern (cdc/log.py: quote, comma,
# brace, space), so a redaction that stops early leaves the random part in view.
MYSQL_USER = f"cdcsec_{uuid.uuid4().hex[:8]}"
MYSQL_PASSWORD = f"S3cr3t-mysql-{_random()}',\"}} x"
MYSQL_WRONG = f"S3cr3t-mysql-wrong-{_random()}"
ES_WRONG = f"S3cr3t-es-wrong-{_random()}:,\"}}"
API_KEY_ID = f"S3cr3tKeyId{_random()}"
API_KEY_SECRET = f"S3cr3t-apikey-{_random()}"
API_KEY = base64.b64encode(f"{API_KEY_ID}:{API_KEY_SECRET}".encode()).decode()  # what `api_key` takes


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _needles() -> dict[str, str]:
    """Every form of every secret that must not appear: name -> the string searched for."""
    out = {}
    for name, secret in (("mysql password", MYSQL_PASSWORD), ("wrong mysql password", MYSQL_WRONG),
                         ("es password", ES_PASSWORD), ("wrong es password", ES_WRONG),
                         ("api key secret", API_KEY_SECRET)):
        out[name] = secret
        out[f"{name} (its random part)"] = secret.split("-")[-1][:12]
        out[f"{name} (percent-encoded)"] = urllib.parse.quote(secret, safe="")
    out["api key (base64, as configured and sent)"] = API_KEY
    out["api key (id:key)"] = f"{API_KEY_ID}:{API_KEY_SECRET}"
    out["es basic auth (base64 of user:password)"] = _basic(ES_USER, ES_PASSWORD)
    out["wrong es basic auth (base64 of user:password)"] = _basic(ES_USER, ES_WRONG)
    return out


class Outputs:
    """Everything cdc printed or wrote, by where it came from."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str) -> None:
        if where in self.texts:  # the same command again (`status --json` while running, then stopped)
            where = next(f"{where} #{n}" for n in range(2, 100) if f"{where} #{n}" not in self.texts)
        self.texts[where] = text

    def add_files(self, where: str, directory: Path) -> None:
        files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
        assert files, f"nothing written in {directory}"
        for path in files:
            self.add(f"{where}: {path.relative_to(directory)}", path.read_text(errors="replace"))

    def leaks(self) -> dict[str, list[str]]:
        needles = _needles()
        found: dict[str, list[str]] = {}
        for where, text in self.texts.items():
            hits = [name for name, needle in needles.items() if needle in text]
            if hits:
                found[where] = hits
        return found


class Cdc:
    """One config's commands, each run with stdout and stderr kept apart and recorded in `outputs`."""

    def __init__(self, name: str, config_path: Path, env: dict[str, str], outputs: Outputs):
        self.name, self.config_path, self.env, self.outputs = name, config_path, env, outputs

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "cdc", *args, "--config", str(self.config_path)]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env})
        where = f"{self.name}: cdc {' '.join(args)}"
        self.outputs.add(f"{where} (stdout)", done.stdout)
        self.outputs.add(f"{where} (stderr)", done.stderr)
        return done

    def start(self, *args: str) -> "Daemon":
        return Daemon(self, args)


class Daemon:
    """`cdc run` in the background; its stdout and stderr go to files, recorded when it has stopped."""

    def __init__(self, cdc: Cdc, args: tuple[str, ...]):
        self.cdc = cdc
        self.where = f"{cdc.name}: cdc {' '.join(args)}"
        slug = "-".join(a.strip("-") for a in args)
        self.stdout = cdc.config_path.parent / f"{slug}.out"
        self.stderr = cdc.config_path.parent / f"{slug}.err"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(cdc.argv(args), stdout=out, stderr=err, env={**os.environ, **cdc.env})

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def wait_for(self, what: str, condition, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"cdc exited with {self.proc.returncode} before {what}:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.cdc.outputs.add(f"{self.where} (stdout)", self.stdout.read_text(errors="replace"))
        self.cdc.outputs.add(f"{self.where} (stderr)", self.log())
        return code


def _http(url: str) -> str:
    """A GET's body, also of an error status (/readyz answers 503 while not ready)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


@pytest.fixture(scope="module")
def mysql_user(servers):
    """A replication user of this module's own, with a distinctive password; dropped at the end."""
    admin = Admin(servers)
    admin.execute(f"CREATE USER '{MYSQL_USER}'@'127.0.0.1' IDENTIFIED BY %s", args=(MYSQL_PASSWORD,))
    admin.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, REPLICATION MASTER ADMIN "
                  f"ON *.* TO '{MYSQL_USER}'@'127.0.0.1'")
    admin.close()
    yield MYSQL_USER
    admin = Admin(servers)
    admin.execute(f"DROP USER IF EXISTS '{MYSQL_USER}'@'127.0.0.1'")
    admin.close()


@pytest.fixture
def index(secure_index):
    return secure_index  # tests/integration/conftest.py


def _secret_file(directory: Path, name: str, secret: str) -> str:
    path = directory / name
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)
    return str(path)


def _url(secure_es, user: str, password: str, port: int | None = None) -> str:
    """The node's URL (or a proxy's to it) with credentials in it (docs/security.md: logged without them)."""
    host, node_port = urllib.parse.urlsplit(secure_es["url"]).netloc.split(":")
    return f"https://{user}:{urllib.parse.quote(password, safe='')}@{host}:{port or node_port}"


def _endpoints(cdc: Cdc, outputs: Outputs, when: str) -> dict[str, str]:
    """A running daemon's /metrics, /healthz and /readyz (README: Operations), recorded in `outputs`."""
    port = yaml.safe_load(cdc.config_path.read_text())["metrics"]["port"]
    answers = {path: _http(f"http://127.0.0.1:{port}{path}") for path in ("/metrics", "/healthz", "/readyz")}
    for path, text in answers.items():
        outputs.add(f"{cdc.name}: {path} {when}", text)
    return answers


def test_no_secret_in_any_output_working_or_failing(secure_es, servers, mysql_user, db, database, index,
                                                     tmp_path):
    outputs = Outputs()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    state = tmp_path / "state"

    def config(name: str, mysql: dict | None = None, env: dict[str, str] | None = None, shared: bool = False,
               attempts: int = 2, **es) -> Cdc:
        """A config against the secured node as the module's MySQL user (password from ${VAR} unless `mysql`).

        Each has its own metrics port and server_id, and its own state directory unless `shared` (the
        working setup's), so that configs can run side by side.
        """
        where = tmp_path / name
        where.mkdir()
        es = {k: v for k, v in {"hosts": [secure_es["url"]], "ca_certs": str(secure_es["ca"]), **es}.items()
              if v is not None}
        setup = CdcSetup(where, servers, [{"schema": database, "table": "items", "index": index}],
                         **{f"elasticsearch__{k}": v for k, v in es.items()},
                         checkpoint__path="checkpoint.json", dead_letter__on_rejected="dead_letter",
                         metrics__enabled=True, metrics__port=free_port(), retry__max_attempts=attempts)
        data = yaml.safe_load(setup.config_path.read_text())
        data["state_dir"] = str(state if shared else where / "state")
        data["mysql"]["user"] = mysql_user
        data["mysql"]["password"] = "${CDC_SECRETS_MYSQL}"
        data["mysql"].update(mysql or {})
        data["mysql"] = {k: v for k, v in data["mysql"].items() if v is not None}  # None: the key left out
        setup.config_path.write_text(yaml.safe_dump(data))
        return Cdc(name, setup.config_path, {"CDC_SECRETS_MYSQL": MYSQL_PASSWORD, **(env or {})}, outputs)

    admin = secure_es["admin"]
    # `code` must be numeric: a row whose code is not a number is rejected by Elasticsearch (400).
    admin.indices.create(index=index, mappings={"properties": {"code": {"type": "long"}}})
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), code VARCHAR(20))",
               "INSERT INTO items VALUES (1, 'one', '1'), (2, 'two', '2')")

    # ---- a working setup: MySQL password from ${VAR}, Elasticsearch password from a file
    good = config("good", shared=True, username=ES_USER,
                  password_file=_secret_file(secrets, "es.password", ES_PASSWORD))
    letters = state / "dead-letters.jsonl"
    daemon = good.start("run", "--log-format", "text", "--log-level", "DEBUG")
    try:
        db.execute("INSERT INTO items VALUES (3, 'three', 'not a number'), (4, 'four', '4')")
        daemon.wait_for("the dead letter", lambda: letters.exists() and letters.read_text().count("\n") == 1)
        daemon.wait_for("rows 1, 2 and 4", lambda: sorted(es_docs(admin, index)) == ["1", "2", "4"])
        endpoints = _endpoints(good, outputs, "while running")
        assert "cdc_dead_letters" in endpoints["/metrics"]
        status = good("status", "--json")  # the lag and the writer from the daemon's /metrics
        assert json.loads(status.stdout)["daemon_running"] is True, status.stdout
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]

    # Again with JSON logs (their extra fields, such as a dead letter's `error`, are not the message), the
    # credentials in the URL, and Elasticsearch unreachable for a while: the writer waits, and /metrics,
    # /readyz and `cdc status` say why.
    host, port = urllib.parse.urlsplit(secure_es["url"]).netloc.split(":")
    proxy = FaultProxy(host, int(port))
    through = config("good-url", shared=True, attempts=1000,
                     hosts=[_url(secure_es, ES_USER, ES_PASSWORD, port=proxy.port)])
    daemon = through.start("run", "--log-format", "json", "--log-level", "DEBUG")
    try:
        daemon.wait_for("the start", lambda: '"event":"start"' in daemon.log())
        db.execute("INSERT INTO items VALUES (5, 'five', 'five')")
        daemon.wait_for("the second dead letter", lambda: letters.read_text().count("\n") == 2)
        proxy.cut()
        db.execute("INSERT INTO items VALUES (6, 'six', '6')")
        daemon.wait_for("a retry", lambda: '"event":"retry"' in daemon.log())
        endpoints = _endpoints(through, outputs, "while Elasticsearch is unreachable")
        [waiting] = [line for line in endpoints["/metrics"].splitlines() if line.startswith("cdc_sink_waiting{")]
        assert "Elasticsearch unreachable" in waiting and waiting.endswith(" 1.0"), waiting
        # `status` gives the daemon's /metrics 3 s to answer, which a loaded machine can miss (then the
        # writer is unknown, and a problem says why): ask again until it answered.
        daemon.wait_for("`cdc status` with the writer waiting",
                        lambda: (json.loads(through("status", "--json").stdout)["writer"] or {}).get("waiting"))
        proxy.restore()
        daemon.wait_for("row 6", lambda: "6" in es_docs(admin, index))
    finally:
        proxy.restore()  # a stop finishes the batch being written: it must get through
        try:
            assert daemon.stop() == 0, daemon.log()[-3000:]
        finally:
            proxy.close()
    assert '"event":"dead_letter"' in outputs.texts["good-url: cdc run --log-format json --log-level DEBUG (stderr)"]
    listed = good("dlq", "list", "--json")
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert len(ids) == 2, listed

    # ---- faults: each config fails its own way; each meets a copy of the state (a checkpoint, dead letters)
    # A wrong Elasticsearch password, in the URL: the client keeps it as a header of the node (hidden in its repr).
    wrong_es = config("wrong-es-password", hosts=[_url(secure_es, ES_USER, ES_WRONG)])
    # An API key the server does not know, from a file.
    api_key = config("api-key", api_key_file=_secret_file(secrets, "es.api_key", API_KEY))
    # A wrong MySQL password, from a file, and as a literal in a world-readable config (which warns);
    # the Elasticsearch password as a literal, and from ${VAR}.
    mysql_file = config("wrong-mysql-file",
                        mysql={"password": None, "password_file": _secret_file(secrets, "mysql.password", MYSQL_WRONG)},
                        username=ES_USER, password=ES_PASSWORD)
    mysql_literal = config("wrong-mysql-literal", mysql={"password": MYSQL_WRONG}, username=ES_USER,
                           password="${CDC_SECRETS_ES}", env={"CDC_SECRETS_ES": ES_PASSWORD})
    os.chmod(mysql_literal.config_path, 0o644)
    # A certificate from another CA, with the right credentials: from ${VAR}, and in the URL.
    tls_env = config("other-ca", ca_certs=str(secure_es["other_ca"]), username=ES_USER,
                     password="${CDC_SECRETS_ES}", env={"CDC_SECRETS_ES": ES_PASSWORD})
    tls_url = config("other-ca-url", ca_certs=str(secure_es["other_ca"]),
                     hosts=[_url(secure_es, ES_USER, ES_PASSWORD)])
    for cdc in (wrong_es, api_key, mysql_file, mysql_literal, tls_env, tls_url):
        shutil.copytree(state, cdc.config_path.parent / "state")
    init_dir = tmp_path / "init"
    init_dir.mkdir()
    init = Cdc("init", init_dir / "cdc.yml", {"CDC_SECRETS_MYSQL": MYSQL_PASSWORD}, outputs)

    refused, denied, untrusted = "refused the credentials (401)", "Access denied for user", "certificate verify failed"
    # What each command must have done (exit code, and a text in its stdout or stderr), so that
    # a command that failed early for another reason cannot pass for one that said nothing.
    # Commands run side by side (a config's own one after another): each is mostly Python's start.
    plan: list[tuple[Cdc, list[tuple[tuple[str, ...], int, str, str]]]] = [
        (good, [(("dlq", "list"), 0, "stderr", "2 dead letter"),
                (("dlq", "show", ids[0]), 0, "stdout", "not a number"),
                (("dlq", "retry"), 1, "stdout", "still_failing"),  # the mapping still refuses them
                (("verify", "--json", "--log-format", "json", "--log-level", "DEBUG"), 1, "stdout", '"missing": 2'),
                (("check", "--log-format", "text", "--log-level", "DEBUG"), 0, "stdout", "elasticsearch"),
                (("status",), 0, "stdout", "checkpoint")]),  # no daemon: the lag is counted from MySQL
        # `cdc init` reads the password from a variable and writes `${VAR}` (docs/cli.md).
        (init, [(("init", "--host", servers.mariadb_host, "--port", str(servers.mariadb_port), "--user", mysql_user,
                  "--password-env", "CDC_SECRETS_MYSQL", "--table", f"{database}.items"), 0, "stdout", "items")]),
        (wrong_es, [(("run", "--log-format", "json", "--log-level", "DEBUG"), 2, "stderr", refused),
                    (("check", "--json"), 2, "stdout", refused),
                    (("dlq", "retry"), 2, "stderr", refused)]),
        (api_key, [(("run", "--log-format", "text", "--log-level", "DEBUG"), 2, "stderr", refused),
                   (("check", "--json"), 2, "stdout", refused),
                   (("verify", "--log-format", "text", "--log-level", "DEBUG"), 2, "stderr", refused)]),
        (mysql_file, [(("run", "--log-format", "text", "--log-level", "DEBUG"), 2, "stderr", denied),
                      (("check", "--json"), 2, "stdout", denied),
                      (("status", "--json"), 0, "stdout", denied)]),
        (mysql_literal, [(("run", "--log-format", "json", "--log-level", "DEBUG"), 2, "stderr", denied),
                         (("check", "--offline"), 0, "stderr", "readable by every user")]),
        (tls_env, [(("run", "--log-format", "text", "--log-level", "DEBUG"), 2, "stderr", untrusted),
                   (("check", "--json"), 2, "stdout", untrusted)]),
        (tls_url, [(("run", "--log-format", "json", "--log-level", "DEBUG"), 2, "stderr", untrusted),
                   (("dlq", "retry"), 2, "stderr", untrusted)]),
    ]

    def commands(cdc: Cdc, steps) -> list[str]:
        wrong = []
        for args, code, stream, text in steps:
            done = cdc(*args, timeout=90)
            if done.returncode != code or text not in getattr(done, stream):
                wrong.append(f"{cdc.name}: cdc {' '.join(args)}: exit {done.returncode} (expected {code}, and "
                             f"{text!r} in {stream}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        return wrong

    with ThreadPoolExecutor(max_workers=3) as pool:
        wrong = [w for found in pool.map(lambda item: commands(*item), plan) for w in found]
    assert not wrong, "\n\n".join(wrong)
    assert "${CDC_SECRETS_MYSQL}" in (init_dir / "cdc.yml").read_text()

    outputs.add_files("written by cdc init", init_dir)
    outputs.add_files("state directory", state)
    assert "not a number" in outputs.texts["state directory: dead-letters.jsonl"]
    for cdc in (wrong_es, api_key, mysql_file, mysql_literal, tls_env, tls_url):
        outputs.add_files(f"{cdc.name}: state directory", cdc.config_path.parent / "state")
    leaks = outputs.leaks()
    assert not leaks, "secrets found (where: which forms):\n" + "\n".join(
        f"  {where}: {', '.join(forms)}" for where, forms in leaks.items())
