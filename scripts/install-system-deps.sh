#!/usr/bin/env bash
# Install the Debian packages the demo and the tests need, only if missing.
# MariaDB comes from Debian; Elasticsearch comes from Maven Central (scripts/servers.py),
# so we need mvn, unzip and a JDK 17 here.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server mariadb-client)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
ls /usr/lib/jvm/*/bin/java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
# The container tests (tests/integration/test_container.py, scripts/container.py):
# podman builds and runs the image, runc runs it (crun refuses this host's cgroup
# layout), debootstrap makes the local base image (no registry is reachable).
# debootstrap also makes the Debian unstable root MySQL 9.7 runs from (scripts/servers.py
# sid_root: Debian 12 has no MySQL server).
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# The compose stack test (tests/integration/test_compose_stack.py, scripts/compose_stack.py):
# podman's CNI networks resolve service names (mysql, elasticsearch) only with the dnsname
# plugin (it runs dnsmasq).
[ -e /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[deps] installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
