#!/bin/sh
# The Debian packages the tests use: chromium (tests/test_browser.py; playwright drives it, never
# `playwright install`), redis-server and redis-tools (the rooms tests start their own servers on free
# ports, and a Redis Cluster of six with redis-cli: Redis >= 7 for sharded pub/sub) and iproute2.
# Does nothing when all are there; uses sudo when not root.
set -eu
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v redis-server > /dev/null || missing="$missing redis-server"
command -v redis-cli > /dev/null || missing="$missing redis-tools"
command -v ss > /dev/null || missing="$missing iproute2"  # (ss reads a listener's backlog: tests/test_cli_options.py)
if [ -z "$missing" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing > /dev/null
