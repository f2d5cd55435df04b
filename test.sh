#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every test (unit and
# integration: real nginx, the daemon and the upstream simulator on loopback).
#   bash test.sh              the whole suite
#   TG_SANITIZE=1 bash test.sh    the same under AddressSanitizer and UBSan (build-asan/)
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
bash "$top/scripts/deps.sh" --test
build=$top/build
args=(-DTG_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ -n "${TG_SANITIZE:-}" ]; then
  build=$top/build-asan
  args=(-DTG_WERROR=ON -DTG_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
# The JavaScript test clients (the official SDKs, the browser driver), pinned by their
# lock files; reinstalled when a lock file is newer than what is installed.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
for dir in "$top"/tests/*/; do
  if [ -f "$dir/package-lock.json" ] &&
     [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
cmake -S "$top" -B "$build" "${args[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j2 "$@"
