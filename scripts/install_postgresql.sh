#!/usr/bin/env bash
# The PostgreSQL server binaries the cluster tests start (tests/test_cluster.py) and the
# cluster set-up of docs/at-scale.md uses: Debian's `postgresql` package, installed only where
# `pg_ctl` is missing. Needs root (or sudo). The tests run their own throwaway server: nothing is started.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" > /dev/null || command -v pg_ctl > /dev/null; then
    echo "PostgreSQL server binaries present: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends postgresql
ls -d /usr/lib/postgresql/*/bin
