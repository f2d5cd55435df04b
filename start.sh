#!/usr/bin/env bash
# Installs what is missing, builds, and starts taskgate on http://127.0.0.1:8080: nginx
# (its own prefix under run/, never the system's nginx) in front of the daemon, against
# Parallel when PARALLEL_API_KEY is set and against the bundled simulator otherwise.
#   bash start.sh         start (or restart) everything
#   bash start.sh stop    stop everything it started
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
run=${TASKGATE_RUN_DIR:-$top/run}
port=${TASKGATE_PORT:-8080}
sim_port=${TASKGATE_SIM_PORT:-8090}
build=$top/build

stop() {
  for name in nginx taskgate tg_sim; do
    pidfile=$run/$name.pid
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        if [ "$name" = nginx ]; then kill -QUIT "$pid"; else kill -TERM "$pid"; fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$pidfile"
    fi
  done
}

if [ "${1:-}" = stop ]; then
  stop
  echo "taskgate: stopped"
  exit 0
fi

bash "$top/scripts/deps.sh"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target taskgate tg_sim >/dev/null
mkdir -p "$run/tmp"
stop

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

cat >"$run/taskgate.conf" <<CONF
# Written by start.sh; see conf/taskgate.conf for every key.
listen = $run/taskgate.sock
# Only the daemon's user and group may speak FastCGI to it: nginx runs its workers as
# that same user (or, started by root, as root), never "anyone on this machine".
socket_mode = 0660
database = $run/taskgate.db
upstream_url = $upstream
threads = 32
nginx_listen = 127.0.0.1:$port
CONF

tg() { "$build/taskgate" --config "$run/taskgate.conf" "$@"; }
tg init
if ! tg team list | grep -q '^demo '; then
  printf '%s\n' "$key" | tg team add demo
  printf '{"processor":"base","metadata":{"source":"demo"}}\n' | tg preset set demo default -
elif ! tg team list | grep -q "^demo .*sha256:$(printf '%s' "$key" | sha256sum | cut -c1-12)"; then
  # The upstream changed (PARALLEL_API_KEY set or unset since the last start).
  printf '%s\n' "$key" | tg team set-key demo
fi
if [ ! -s "$run/demo-token" ]; then
  (umask 077; tg token issue demo --label demo >"$run/demo-token")
fi
token=$(cat "$run/demo-token")

# Detached from this shell: its output goes to the log, not to whoever ran start.sh.
nohup "$build/taskgate" --config "$run/taskgate.conf" serve >>"$run/taskgate.log" 2>&1 </dev/null &
echo $! >"$run/taskgate.pid"
for _ in $(seq 100); do [ -S "$run/taskgate.sock" ] && break; sleep 0.05; done
if ! kill -0 "$(cat "$run/taskgate.pid")" 2>/dev/null; then
  echo "taskgate: the daemon did not start:" >&2
  tail -n 5 "$run/taskgate.log" >&2
  exit 1
fi

user_line=""
# nginx's workers run as the daemon's own user (or, started by root, as root): the only
# ones besides the daemon that may write to its 0660 socket.
[ "$(id -u)" -eq 0 ] && user_line="user root;"
# The site comes from the daemon's own config: one source for the socket, the limits,
# the timeouts and the upstream (with its TLS when it is Parallel).
tg nginx-site >"$run/site.conf"
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
The demo team's token is in $run/demo-token. Try:

  curl -s http://127.0.0.1:$port/v1/runs \\
    -H "Authorization: Bearer $token" \\
    -H 'Content-Type: application/json' \\
    -d '{"inputs": ["What is the capital of France?", "Who wrote Hamlet?"]}'

In a browser: http://127.0.0.1:$port/ (the form; paste the token), /history
With an SDK:  base URL http://127.0.0.1:$port, API key the token (see docs/reference.md,
              "Using the official SDKs")
Audit it:  sqlite3 $run/taskgate.db 'SELECT * FROM audit_runs'
           $build/taskgate --config $run/taskgate.conf audit submissions
Stop it:   bash start.sh stop
MSG
