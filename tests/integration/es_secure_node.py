"""The Elasticsearch with security on that test_es_security.py and test_secrets.py share.

One node for the session (the `secure_es` fixture, tests/integration/conftest.py): it
takes 20-50 s to start on the 2-core machine, so a second one for a second module
would cost that again. A module that uses it names it in its WARM_UP
(`WARM_UP = {"secure_es": SECURE_ES}`) so the warm-up starts it early (tests/conftest.py).

TLS on HTTP from a generated CA, and file-realm users and roles: the native realm's
`.security` index needs the analysis-common module, which the integ-test-zip lacks,
so API keys cannot be created here (creating one answers "Unknown filter type
[pattern_capture]"); a key the server does not know is refused with 401.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from certs import CA
from cryptography.hazmat.primitives import serialization
from harness import free_port

# Every index on the node starts with it, so the roles can name "<prefix>*".
PREFIX = f"sec{uuid.uuid4().hex[:8]}"
# Distinctive values, so that a search for one in an output means a leak (test_secrets.py).
# The "secrets" user's has the characters that end a value in log redaction (cdc/log.py).
PASSWORDS = {name: f"S3cr3t-es-{name}-{uuid.uuid4().hex[:12]}"
             for name in ("writer", "reader", "creator", "elsewhere", "nomonitor")}
PASSWORDS["secrets"] = f"S3cr3t-es-{uuid.uuid4().hex[:12]}',\"}} x"

# docs/security.md "Minimal Elasticsearch role", with these index names.
WRITER = {"cluster": ["monitor"],
          "indices": [{"names": [f"{PREFIX}*"],
                       "privileges": ["auto_configure", "index", "delete", "view_index_metadata"]}]}
ROLES = {
    "cdc_writer": WRITER,
    # docs/security.md: `cdc verify` reads documents too.
    "cdc_verify": {"cluster": ["monitor"],
                   "indices": [{"names": [f"{PREFIX}*"],
                                "privileges": ["auto_configure", "index", "delete", "view_index_metadata",
                                               "read"]}]},
    # docs/security.md: rules' `create_index` makes indices (create_index) and templates (manage_index_templates).
    "cdc_creator": {"cluster": ["monitor", "manage_index_templates"],
                    "indices": [{"names": [f"{PREFIX}*"],
                                 "privileges": ["auto_configure", "index", "delete", "view_index_metadata",
                                                "create_index"]}]},
    # Privileges on other indices only: every write to ours is refused (403 per bulk item).
    "cdc_elsewhere": {"cluster": ["monitor"],
                      "indices": [{"names": ["other-*"], "privileges": ["auto_configure", "index", "delete"]}]},
    # No cluster privilege: the start-up health check is refused (403 for the request).
    "cdc_nomonitor": {"indices": WRITER["indices"]},
}
USERS = {"writer": ["cdc_writer"], "reader": ["cdc_verify"], "creator": ["cdc_creator"],
         "elsewhere": ["cdc_elsewhere"], "nomonitor": ["cdc_nomonitor"], "secrets": ["cdc_verify"]}


def start_secure_es() -> dict:
    """The secured node (servers.ServerError if it cannot start); started early by the warm-up."""
    import servers as dev  # scripts/servers.py

    certs_dir = Path(tempfile.mkdtemp(prefix="cdcescerts"))
    os.chmod(certs_dir, 0o755)
    ca, other = CA(certs_dir, "es-test"), CA(certs_dir, "es-other")
    cert, key, server_cert = ca.issue("es-http", server=True)
    run_dir = Path(tempfile.mkdtemp(prefix="es-secure-", dir=dev.HOME))  # esrun must reach it
    try:
        node = dev.es_secure_up(run_dir, free_port(), free_port(), cert, key, ca.path,
                                users={name: (PASSWORDS[name], roles) for name, roles in USERS.items()},
                                roles=ROLES)
    except dev.ServerError:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(certs_dir, ignore_errors=True)
        raise
    fingerprint = hashlib.sha256(server_cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return {"node": node, "url": node.url, "ca": ca.path, "other_ca": other.path, "fingerprint": fingerprint,
            "certs_dir": certs_dir}


def stop_secure_es(started: dict) -> None:
    import servers as dev

    dev.es_secure_down(started["node"])
    shutil.rmtree(started["node"].run_dir, ignore_errors=True)
    shutil.rmtree(started["certs_dir"], ignore_errors=True)


SECURE_ES = (start_secure_es, stop_secure_es)  # a module's WARM_UP entry (tests/conftest.py)
