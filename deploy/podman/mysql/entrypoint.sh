#!/bin/bash
# The part of the official mysql image's docker-entrypoint.sh that docker-compose.yml
# uses: options as the command run mysqld; an empty data directory is initialised,
# root gets MYSQL_ROOT_PASSWORD (from localhost and from the network), and
# /docker-entrypoint-initdb.d/*.sql run once on a server that does not listen on the
# network (so a TCP health check passes only once the real server is up).
set -euo pipefail
if [ "${1:0:1}" = "-" ]; then
    set -- mysqld "$@"
fi
if [ "$1" != "mysqld" ]; then
    exec "$@"
fi
shift
log() { echo "$(date -u +%FT%TZ) [Entrypoint]: $*"; }

if [ ! -d /var/lib/mysql/mysql ]; then
    : "${MYSQL_ROOT_PASSWORD:?the mysql service needs MYSQL_ROOT_PASSWORD}"
    log "initialising the data directory"
    chown mysql:mysql /var/lib/mysql
    mysqld "$@" --user=mysql --initialize-insecure
    log "starting a set-up server (no networking)"
    mysqld "$@" --user=mysql --skip-networking --mysqlx=OFF &
    setup=$!
    for _ in $(seq 1 120); do
        mysqladmin --user=root ping --silent >/dev/null 2>&1 && break
        kill -0 "$setup" || { log "the set-up server died"; exit 1; }
        sleep 0.5
    done
    mysql --user=root <<SQL
SET @@SESSION.SQL_LOG_BIN=0;
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
CREATE USER 'root'@'%' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
SQL
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sql) log "running $file"; mysql --user=root --password="$MYSQL_ROOT_PASSWORD" < "$file" ;;
            *) [ -e "$file" ] && log "ignoring $file" ;;
        esac
    done
    mysqladmin --user=root --password="$MYSQL_ROOT_PASSWORD" shutdown
    wait "$setup"
    log "set-up done"
fi
exec mysqld "$@" --user=mysql
