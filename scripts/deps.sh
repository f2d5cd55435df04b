#!/usr/bin/env bash
# Installs what taskgate needs to build, run and test, from Debian's packages, skipping
# what is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(build-essential cmake pkg-config libfcgi-dev libcurl4-openssl-dev libjson-c-dev
          libsqlite3-dev libssl-dev nginx-light sqlite3 curl python3 ca-certificates wrk
          chromium nodejs npm)
if [ "$#" -gt 0 ]; then
  packages+=("$@")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js runs the official SDKs' tests; any recent one will do (Debian's, or NodeSource's).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  :
else
  missing+=(nodejs npm)
fi
# nginx from any Debian flavour (nginx, nginx-core, nginx-full, nginx-light) will do.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  missing=("${missing[@]/nginx-light}")
fi
# Likewise any node with its npm (the browser tests need node 18 or later).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}")
  missing=("${missing[@]/npm}")
fi
read -r -a missing <<< "${missing[*]}"

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "taskgate: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The browser tests' driver (playwright-core, pinned in tests/browser/package-lock.json),
# without a browser download: they use Debian's chromium.
top=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$top/tests/browser/node_modules/playwright-core" ]; then
  (cd "$top/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi
