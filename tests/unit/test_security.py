"""TLS and secrets: config validation, what reaches the MySQL and Elasticsearch clients, and the warnings.

No servers: the client constructors are replaced by recorders, so these check
the arguments cdc passes, not the TLS handshakes themselves.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest
import yaml

from cdc.config import load_config, parse_config, security_warnings
from cdc.errors import ConfigError

MYSQL = {"user": "cdc", "server_id": 7}
FINGERPRINT = "AB:" * 31 + "CD"


def config_with(tmp_path=None, **sections):
    return parse_config({"mysql": MYSQL, **sections}, base_dir=str(tmp_path or "."))


# ---------------------------------------------------------------- MySQL TLS
@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """A self-signed certificate and its key, as files (enough to build a real SSLContext)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdc-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory


def test_mysql_without_tls():
    assert config_with().mysql.ssl_context() is None


def test_mysql_tls_verifies_by_default_and_resolves_paths(pem):
    config = config_with(pem, mysql={**MYSQL, "ssl_ca": "cert.pem", "ssl_cert": str(pem / "cert.pem"),
                                     "ssl_key": "key.pem"})
    assert (config.mysql.ssl_ca, config.mysql.ssl_key) == (str(pem / "cert.pem"), str(pem / "key.pem"))
    context = config.mysql.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "cdc-test"),),)]


def test_mysql_tls_without_a_ca_verifies_against_the_system_cas(pem):
    # PyMySQL's dict form would check nothing when no CA is given.
    context = config_with(pem, mysql={**MYSQL, "ssl_cert": "cert.pem", "ssl_key": "key.pem"}).mysql.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_mysql_verify_off_is_explicit_and_warned(pem):
    config = config_with(pem, mysql={**MYSQL, "ssl_ca": "cert.pem", "ssl_verify": False})
    context = config.mysql.ssl_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert any("mysql.ssl_verify: false" in w for w in security_warnings(config))


def test_mysql_cert_needs_key():
    with pytest.raises(ConfigError, match="ssl_cert and ssl_key go together"):
        config_with(mysql={**MYSQL, "ssl_cert": "c.pem"})


def test_missing_tls_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="mysql: cannot load the TLS files"):
        config_with(tmp_path, mysql={**MYSQL, "ssl_ca": "nowhere.pem"})


def test_the_tls_context_reaches_both_mysql_connections(monkeypatch, pem):
    import cdc.mysql.server
    import cdc.mysql.source
    from cdc.config import RetryConfig

    config = config_with(pem, mysql={**MYSQL, "ssl_ca": "cert.pem", "password": "pw"}).mysql
    seen = {}

    def connect(**kwargs):
        seen["query"] = kwargs
        raise cdc.mysql.server.pymysql.err.OperationalError(2003, "stop here")

    monkeypatch.setattr(cdc.mysql.server.pymysql, "connect", connect)
    with pytest.raises(Exception):
        cdc.mysql.server.Database(config)

    class Reader:
        def __init__(self, **kwargs):
            seen["binlog"] = kwargs["connection_settings"]

    monkeypatch.setattr(cdc.mysql.source, "BinLogStreamReader", Reader)
    source = cdc.mysql.source.BinlogSource(config, True, {("s", "t")}, RetryConfig())
    source._open(cdc.mysql.source.StartPoint(cdc.mysql.source.BinlogPosition("binlog.000001", 4)))
    for context in (seen["query"]["ssl"], seen["binlog"]["ssl"]):
        assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED


# ---------------------------------------------------------------- Elasticsearch TLS
@pytest.fixture
def es_kwargs(monkeypatch):
    import cdc.es.transport

    seen = {}

    class Client:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(cdc.es.transport, "Elasticsearch", Client)

    def build(**elasticsearch):
        seen.clear()
        cdc.es.transport.ElasticsearchTransport(config_with(elasticsearch=elasticsearch).elasticsearch)
        return dict(seen)

    return build


def test_elasticsearch_verifies_by_default(es_kwargs):
    kwargs = es_kwargs(hosts=["https://es:9200"], ca_certs="/ca.pem")
    assert kwargs["ca_certs"] == "/ca.pem"
    assert "verify_certs" not in kwargs  # the client's default: verify
    assert config_with().elasticsearch.insecure is False


def test_elasticsearch_fingerprint_is_passed_and_checked(es_kwargs):
    assert es_kwargs(hosts=["https://es:9200"], ssl_assert_fingerprint=FINGERPRINT)["ssl_assert_fingerprint"] \
        == FINGERPRINT
    with pytest.raises(ConfigError, match="SHA-256 fingerprint"):
        config_with(elasticsearch={"ssl_assert_fingerprint": "abc"})


def test_elasticsearch_insecure_must_be_explicit(es_kwargs):
    with pytest.raises(ConfigError, match="say so with insecure: true"):
        config_with(elasticsearch={"verify_certs": False})
    kwargs = es_kwargs(hosts=["https://es:9200"], insecure=True)
    assert kwargs["verify_certs"] is False and kwargs["ssl_show_warn"] is False
    warnings = security_warnings(config_with(elasticsearch={"insecure": True}))
    assert any("elasticsearch.insecure: true" in w for w in warnings)


def test_credentials_over_plain_http_are_warned():
    assert security_warnings(config_with(elasticsearch={"username": "u", "password": "p"}))
    assert security_warnings(config_with(elasticsearch={"hosts": ["http://u:p@es:9200"]}))  # in the URL
    assert not security_warnings(config_with(elasticsearch={"hosts": ["http://es:9200"]}))
    assert not security_warnings(config_with(elasticsearch={"hosts": ["https://es:9200"], "username": "u",
                                                            "password": "p"}))


# ---------------------------------------------------------------- secrets in files
def test_password_files(tmp_path, es_kwargs):
    (tmp_path / "mysql.pw").write_text("s3cret\n")
    (tmp_path / "es.pw").write_text("  espw  \nignored second line\n")
    (tmp_path / "es.key").write_text("a2V5\n")
    config = config_with(tmp_path, mysql={**MYSQL, "password_file": "mysql.pw"},
                         elasticsearch={"username": "cdc", "password_file": str(tmp_path / "es.pw")})
    assert config.mysql.password == "s3cret"
    assert config.elasticsearch.password == "espw"
    config = config_with(tmp_path, elasticsearch={"api_key_file": "es.key"})
    assert config.elasticsearch.api_key == "a2V5"


def test_password_file_problems_are_config_errors(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError) as err:
        config_with(tmp_path, mysql={**MYSQL, "password_file": "missing"},
                    elasticsearch={"password_file": "empty"})
    assert "mysql.password_file: cannot read" in str(err.value)
    assert "elasticsearch.password_file:" in str(err.value) and "is empty" in str(err.value)
    with pytest.raises(ConfigError, match="password or password_file, not both"):
        config_with(tmp_path, mysql={**MYSQL, "password": "x", "password_file": "empty"})


def _write(path, data, mode):
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mysql, mode, warned", [
    ({**MYSQL, "password": "literal"}, 0o644, True),
    ({**MYSQL, "password": "literal"}, 0o640, False),  # not world-readable
    ({**MYSQL, "password": "${CDC_TEST_PW}"}, 0o644, False),  # a reference, not a secret
    ({**MYSQL, "password": "pre-${CDC_TEST_PW}"}, 0o644, True),  # part literal
    (MYSQL, 0o644, False),
])
def test_world_readable_config_with_a_secret_is_warned(tmp_path, monkeypatch, mysql, mode, warned):
    monkeypatch.setenv("CDC_TEST_PW", "x")
    path = _write(tmp_path / "cdc.yml", {"mysql": mysql}, mode)
    warnings = security_warnings(load_config(path), path)
    assert any("readable by every user" in w and "mysql.password" in w for w in warnings) == warned


@pytest.mark.parametrize("top, named", [
    ({"elasticsearch": {"hosts": ["https://cdc:literal@es:9200"]}}, "elasticsearch.hosts"),
    ({"elasticsearch": {"hosts": ["https://${CDC_TEST_USER}:${CDC_TEST_PW}@es:9200"]}}, None),  # references
    ({"elasticsearch": {"hosts": ["https://es:9200"]}}, None),
    ({"kafka": {"producer": {"sasl.password": "literal"}}}, "kafka.producer.sasl.password"),
    ({"kafka": {"consumer": {"ssl.key.password": "${CDC_TEST_PW}"}}}, None),
])
def test_world_readable_credentials_in_urls_and_kafka_settings_are_warned(tmp_path, monkeypatch, top, named):
    monkeypatch.setenv("CDC_TEST_PW", "x")
    monkeypatch.setenv("CDC_TEST_USER", "u")
    path = _write(tmp_path / "cdc.yml", {"mysql": MYSQL, **top}, 0o644)
    readable = [w for w in security_warnings(load_config(path), path) if "readable by every user" in w]
    assert (named in readable[0]) if named else not readable, readable


def test_run_logs_the_warnings_and_check_config_prints_them(tmp_path):
    path = _write(tmp_path / "cdc.yml", {"mysql": {**MYSQL, "password": "literal", "port": 1, "connect_timeout": 1},
                                         "elasticsearch": {"insecure": True},
                                         "rules": "rules.yml", "retry": {"max_attempts": 1}}, 0o644)
    (tmp_path / "rules.yml").write_text("rules: [{schema: s, table: t, index: i}]\n")
    result = subprocess.run([sys.executable, "-m", "cdc", "check-config", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "warning: elasticsearch.insecure: true" in result.stderr
    assert "readable by every user and holds mysql.password" in result.stderr
    result = subprocess.run([sys.executable, "-m", "cdc", "run", "--config", str(path), "--log-format", "json"],
                            capture_output=True, text=True, timeout=60)
    logged = [line for line in result.stderr.splitlines() if '"level":"warning"' in line]
    assert any("elasticsearch.insecure: true" in line for line in logged), result.stderr
    assert "literal" not in result.stderr  # the warning names the key, never the secret


@pytest.mark.parametrize("message, shown", [
    # MySQL's refusal: YES/NO say whether a password was sent, and are all that follows.
    ("Access denied for user 'cdc'@'127.0.0.1' (using password: YES)",
     "Access denied for user 'cdc'@'127.0.0.1' (using password: YES)"),
    ("(1045, \"Access denied for user 'cdc'@'::1' (using password: NO)\")",
     "(1045, \"Access denied for user 'cdc'@'::1' (using password: NO)\")"),
    # Secrets, also ones that start like those words.
    ("password: hunter2)", "password: ***"),
    ("password=YES)more", "password=***"),
    ("password: yes)", "password: ***"),
    ('{"api_key": "abc=="}', '{"api_key": "***"}'),
    ("authorization: ApiKey abc", "authorization: ***"),
    ("'Authorization': 'Basic Y2RjOnB3'", "'Authorization': '***'"),
    # cdc's own warning names the key, and the advice after it is kept.
    ("cdc.yml is readable by every user and holds mysql.password; chmod o-r cdc.yml",
     "cdc.yml is readable by every user and holds mysql.password; chmod o-r cdc.yml"),
])
def test_log_redaction_hides_secrets_and_keeps_what_is_not_one(message, shown):
    from cdc.log import redact

    assert redact(message) == shown
