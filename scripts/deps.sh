#!/usr/bin/env bash
# Installs what taskgate needs to build, run and test, from Debian's packages, skipping
# what is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(build-essential cmake pkg-config libfcgi-dev libcurl4-openssl-dev libjson-c-dev
          libsqlite3-dev libssl-dev nginx-light sqlite3 curl python3 ca-certificates wrk)
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
read -r -a missing <<< "${missing[*]}"
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "taskgate: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
