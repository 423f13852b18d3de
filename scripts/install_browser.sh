#!/usr/bin/env bash
# The headless browser the offline-docs test drives (tests/serving/test_docs.py):
# Debian's `chromium` package, installed only where /usr/bin/chromium is missing. Needs root
# (or sudo).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "Chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
