#!/usr/bin/env bash
# Installs what is missing, builds, and starts taskgate on http://127.0.0.1:8080: nginx
# (its own prefix under run/, never the system's nginx) in front of the daemon, against
# Parallel when PARALLEL_API_KEY is set and against the bundled simulator otherwise.
#   bash start.sh           start (or restart) everything, the records in SQLite
#   bash start.sh cluster   the same as two daemons sharing one PostgreSQL server (a local
#                           one in run/pg), behind one nginx upstream block over both
#   bash start.sh stop      stop everything it started, and say what still runs
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
run=${TASKGATE_RUN_DIR:-$top/run}
port=${TASKGATE_PORT:-8080}
sim_port=${TASKGATE_SIM_PORT:-8090}
build=$top/build
mode=${1:-start}

# The PostgreSQL server of `cluster` runs as an unprivileged user when started by root
# (PostgreSQL refuses root).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }

# Stops each process and waits for it to be gone: nginx at once, a daemon once its
# submissions in flight are answered (each upstream call is bounded by upstream_timeout_ms,
# 60 s by default), the simulator at once. Says "stopped" only when everything is gone.
stop() {
  local left="" name pidfile pid waited
  for pidfile in "$run"/nginx.pid "$run"/taskgate*.pid "$run"/tg_sim.pid; do
    [ -f "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      if [ "$name" = nginx ]; then kill -QUIT "$pid"; else kill -TERM "$pid"; fi
      waited=0
      while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 900 ]; do
        sleep 0.1; waited=$((waited + 1))
      done
      if kill -0 "$pid" 2>/dev/null; then
        left="$left $name (pid $pid)"
        continue
      fi
    fi
    rm -f "$pidfile"
  done
  if [ -n "$pg_bin" ] && [ -f "$run/pg/data/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$run/pg/data" -m fast -w stop >/dev/null 2>&1 ||
      left="$left postgresql"
  fi
  if [ -n "$left" ]; then
    echo "taskgate: still running after 90 s:$left" >&2
    return 1
  fi
}

case "$mode" in
  stop)
    if stop; then echo "taskgate: stopped"; exit 0; fi
    exit 1 ;;
  start|cluster) ;;
  *) echo "usage: bash start.sh [cluster|stop]" >&2; exit 2 ;;
esac

bash "$top/scripts/deps.sh"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target taskgate tg_sim >/dev/null
mkdir -p "$run/tmp"
stop || { echo "taskgate: stop what still runs first" >&2; exit 1; }

if [ -n "${PARALLEL_API_KEY:-}" ]; then
  upstream=https://api.parallel.ai
  key=$PARALLEL_API_KEY
  echo "taskgate: upstream is Parallel (PARALLEL_API_KEY is set)"
else
  upstream=http://127.0.0.1:$sim_port
  key=sim-demo-key
  nohup "$build/tests/tg_sim" --port "$sim_port" --key "$key" >"$run/tg_sim.log" 2>&1 </dev/null &
  echo $! >"$run/tg_sim.pid"
  echo "taskgate: upstream is the bundled simulator on 127.0.0.1:$sim_port (set PARALLEL_API_KEY to use Parallel)"
fi

# The daemons' configs: one in SQLite, or (cluster) two sharing one PostgreSQL database
# and one key file, the way several hosts would.
daemons=1
database=$run/taskgate.db
key_line=""
if [ "$mode" = cluster ]; then
  daemons=2
  [ -n "$pg_bin" ] || { echo "taskgate: PostgreSQL's server is not installed" >&2; exit 1; }
  if [ ! -d "$run/pg/data" ]; then
    mkdir -p "$run/pg"
    [ "$(id -u)" -eq 0 ] && chown nobody "$run/pg"
    as_pg "$pg_bin/initdb" -D "$run/pg/data" -U taskgate --auth=trust -E UTF8 --locale=C \
      >"$run/pg/initdb.log"
    printf "listen_addresses = ''\nunix_socket_directories = '%s'\n" "$run/pg" |
      as_pg tee -a "$run/pg/data/postgresql.conf" >/dev/null
  fi
  as_pg "$pg_bin/pg_ctl" -D "$run/pg/data" -l "$run/pg/server.log" -w start >/dev/null
  "$pg_bin/psql" -X -q -d "postgresql:///postgres?host=$run/pg&user=taskgate" \
    -c "SELECT 1 FROM pg_database WHERE datname = 'taskgate'" -t | grep -q 1 ||
    "$pg_bin/psql" -X -q -d "postgresql:///postgres?host=$run/pg&user=taskgate" \
      -c "CREATE DATABASE taskgate"
  database="postgresql:///taskgate?host=$run/pg&user=taskgate"
  # Every host must hold the same key file: here both daemons read one.
  key_line="key_file = $run/cluster.key"
  echo "taskgate: PostgreSQL in $run/pg, two daemons sharing it"
fi
for i in $(seq "$daemons"); do
  suffix=$([ "$daemons" -gt 1 ] && echo "-$i" || true)
  cat >"$run/taskgate$suffix.conf" <<CONF
# Written by start.sh; see conf/taskgate.conf for every key.
listen = $run/taskgate$suffix.sock
# Only the daemon's user and group may speak FastCGI to it: nginx runs its workers as
# that same user (or, started by root, as root), never "anyone on this machine".
socket_mode = 0660
database = $database
$key_line
upstream_url = $upstream
threads = 32
nginx_listen = 127.0.0.1:$port
CONF
done
first=$run/taskgate$([ "$daemons" -gt 1 ] && echo "-1" || true).conf

tg() { "$build/taskgate" --config "$first" "$@"; }
tg init
if ! tg team list | grep -q '^demo '; then
  printf '%s\n' "$key" | tg team add demo
  printf '{"processor":"base","metadata":{"source":"demo"}}\n' | tg preset set demo default -
elif ! tg team list | grep -q "^demo .*sha256:$(printf '%s' "$key" | sha256sum | cut -c1-12)"; then
  # The upstream changed (PARALLEL_API_KEY set or unset since the last start).
  printf '%s\n' "$key" | tg team set-key demo
fi
token_file=$run/$([ "$daemons" -gt 1 ] && echo cluster-demo-token || echo demo-token)
if [ ! -s "$token_file" ]; then
  (umask 077; tg token issue demo --label demo >"$token_file")
fi
token=$(cat "$token_file")

# Detached from this shell: their output goes to the logs, not to whoever ran start.sh.
for i in $(seq "$daemons"); do
  suffix=$([ "$daemons" -gt 1 ] && echo "-$i" || true)
  nohup "$build/taskgate" --config "$run/taskgate$suffix.conf" serve \
    >>"$run/taskgate$suffix.log" 2>&1 </dev/null &
  echo $! >"$run/taskgate$suffix.pid"
  for _ in $(seq 100); do [ -S "$run/taskgate$suffix.sock" ] && break; sleep 0.05; done
  if ! kill -0 "$(cat "$run/taskgate$suffix.pid")" 2>/dev/null; then
    echo "taskgate: the daemon did not start:" >&2
    tail -n 5 "$run/taskgate$suffix.log" >&2
    exit 1
  fi
done

user_line=""
# nginx's workers run as the daemon's own user (or, started by root, as root): the only
# ones besides the daemon that may write to its 0660 socket.
[ "$(id -u)" -eq 0 ] && user_line="user root;"
# The site comes from the daemon's own config: one source for the socket, the limits,
# the timeouts and the upstream (with its TLS when it is Parallel).
tg nginx-site >"$run/site.conf"
if [ "$daemons" -gt 1 ]; then
  # One upstream block over every daemon: nginx spreads requests across them and passes
  # over one that is down.
  servers=""
  for i in $(seq "$daemons"); do servers="$servers    server unix:$run/taskgate-$i.sock;\n"; done
  sed -i "s|^    server unix:$run/taskgate-1.sock;|${servers%\\n}|" "$run/site.conf"
fi
cat >"$run/nginx.conf" <<NGINX
$user_line
daemon on;
worker_processes auto;
pid $run/nginx.pid;
error_log $run/nginx-error.log;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log $run/access.log;
    client_body_temp_path $run/tmp/body;
    fastcgi_temp_path $run/tmp/fastcgi;
    proxy_temp_path $run/tmp/proxy;
    uwsgi_temp_path $run/tmp/uwsgi;
    scgi_temp_path $run/tmp/scgi;
    include $run/site.conf;
}
NGINX
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -p "$run" -c "$run/nginx.conf"
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done

cat <<MSG

taskgate is running on http://127.0.0.1:$port (logs and database in $run).
The demo team's token is in $token_file. Try:

  curl -s http://127.0.0.1:$port/v1/runs \\
    -H "Authorization: Bearer $token" \\
    -H 'Content-Type: application/json' \\
    -d '{"inputs": ["What is the capital of France?", "Who wrote Hamlet?"]}'

In a browser: http://127.0.0.1:$port/ (the form; paste the token), /history
With an SDK:  base URL http://127.0.0.1:$port, API key the token (see docs/reference.md,
              "Using the official SDKs")
Audit it:  $build/taskgate --config $first audit submissions
           $([ "$daemons" -gt 1 ] && echo "psql '$database' -c 'SELECT * FROM audit_runs'" ||
             echo "sqlite3 $run/taskgate.db 'SELECT * FROM audit_runs'")
Stop it:   bash start.sh stop
MSG
