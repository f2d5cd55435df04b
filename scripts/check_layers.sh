#!/usr/bin/env bash
# Checks that every #include "..." of gateway/ points to its own layer or one below it:
# base < store < core < http < cli (the folders, as gateway/CMakeLists.txt links them).
# Prints each include that runs back up a layer and exits 1 when there is one.
#   scripts/check_layers.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
layers=(base store core http cli)
rank() {
  local i
  for i in "${!layers[@]}"; do
    if [ "${layers[$i]}" = "$1" ]; then echo "$i"; return; fi
  done
  echo -1
}
status=0
for layer in "${layers[@]}"; do
  own=$(rank "$layer")
  # A layer's subfolders (store/sqlite/: a backend) belong to it.
  while IFS= read -r file; do
    while IFS= read -r header; do
      where=-1
      # A backend's own header (store/sqlite/tg_sqlite_int.h) serves its folder only.
      if [ -f "$(dirname "$file")/$header" ]; then where=$own; fi
      for other in "${layers[@]}"; do
        [ "$where" -ge 0 ] && break
        if [ -f "$top/gateway/$other/$header" ]; then where=$(rank "$other"); fi
      done
      if [ "$where" -lt 0 ]; then
        echo "${file#"$top"/}: includes \"$header\", which is in no layer" >&2
        status=1
      elif [ "$where" -gt "$own" ]; then
        echo "${file#"$top"/}: includes \"$header\" from ${layers[$where]}/, a layer above" >&2
        status=1
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
  done < <(find "$top/gateway/$layer" -name '*.[ch]' | sort)
done
[ "$status" -eq 0 ] && echo "layers: no include runs back up (${layers[*]})"
exit "$status"
