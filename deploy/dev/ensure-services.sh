#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on loopback for the test suite.
# Reuses servers that already run; otherwise installs Debian's packages and
# starts them (no systemd needed). Creates the hostwright role and database.
set -euo pipefail

PG_ROLE=${PG_ROLE:-hostwright}
PG_PASSWORD=${PG_PASSWORD:-hostwright}
PG_DB=${PG_DB:-hostwright}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "$@" >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null
  fi
}

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 50); do port_open 5432 && break; sleep 0.2; done
fi

as_postgres() {
  if psql -h 127.0.0.1 -U postgres -tAc "select 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -tA "$@"
  else
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -tA "$@"
  fi
}
if [ "$(as_postgres -c "select 1 from pg_roles where rolname='$PG_ROLE'")" != "1" ]; then
  as_postgres -c "create role $PG_ROLE login createdb password '$PG_PASSWORD'" >/dev/null
fi
if [ "$(as_postgres -c "select 1 from pg_database where datname='$PG_DB'")" != "1" ]; then
  as_postgres -c "create database $PG_DB owner $PG_ROLE" >/dev/null
fi

if ! port_open 6379; then
  if ! command -v redis-server >/dev/null; then
    echo "installing Redis"
    apt_install redis-server
  fi
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/hostwright.log
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.2; done
fi
# The browser tests drive Debian's Chromium through Playwright; no browser is ever downloaded.
if ! [ -x /usr/bin/chromium ]; then
  echo "installing Chromium for the browser tests"
  apt_install chromium
fi
# The multi-node lab (tests/lab) boots Debian 12 nodes with systemd-nspawn from a root
# filesystem built by mmdebstrap.
if [ "$(id -u)" = 0 ] && ! { command -v systemd-nspawn && command -v mmdebstrap; } >/dev/null; then
  echo "installing systemd-container and mmdebstrap for the node lab"
  apt_install systemd-container mmdebstrap
fi
port_open 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
port_open 6379 || { echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }
echo "PostgreSQL and Redis answer on loopback"
