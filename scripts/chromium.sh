#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the admin console's browser tests (tests/admin/test_browser.py):
# installs them from Debian's packages when the machine has none. Never downloads a browser elsewhere.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
echo "chromium.sh: installing chromium and chromium-driver from Debian packages" >&2
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
else
  sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi
