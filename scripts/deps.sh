#!/usr/bin/env bash
# Installs what taskgate needs to build and run (and with --test, to test: wrk, Chromium,
# Node.js), from Debian's packages, skipping what is already there; further arguments are
# more packages. Needs root (or sudo) only when something is missing.
#   bash scripts/deps.sh [--test] [PACKAGE ...]
set -euo pipefail

packages=(build-essential cmake pkg-config libfcgi-dev libcurl4-openssl-dev libjson-c-dev
          libsqlite3-dev libssl-dev nginx-light sqlite3 curl python3 ca-certificates
          libpq-dev postgresql)
if [ "${1:-}" = "--test" ]; then
  shift
  packages+=(wrk chromium nodejs npm)
fi
if [ "$#" -gt 0 ]; then
  packages+=("$@")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# nginx from any Debian flavour (nginx, nginx-core, nginx-full, nginx-light) will do.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  missing=("${missing[@]/nginx-light}")
fi
# Likewise any Node.js with its npm, Debian's or NodeSource's (the browser tests and the
# SDKs need 18 or later).
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
