#!/bin/sh
# Debian's chromium, for tests/test_browser.py (playwright drives it; never `playwright install`).
# Does nothing when /usr/bin/chromium is there; uses sudo when not root.
set -eu
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
