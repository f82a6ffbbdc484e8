#!/usr/bin/env bash
# Profiles the release server under a scripted load.
#   profile.sh strace   strace -f during a burst of connects: syscall summary,
#                       then one epoll_wait followed by its batch of accept4 calls
#   profile.sh perf     perf record -e cpu-clock -g during steady echo load,
#                       then the top of perf report
set -euo pipefail
mode=${1:?usage: profile.sh strace|perf}
bin=${ECHO_REACTOR:-target/release/echo-reactor}
load="python3 $(dirname "$0")/load.py"
out=target/profile
mkdir -p "$out"

# Starts the server (under the given wrapper) and sets $port and $wrapper_pid.
start() {
  rm -f "$out/stdout"
  "$@" > "$out/stdout" 2> "$out/stderr" &
  wrapper_pid=$!
  trap 'kill "$wrapper_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    if grep -q '^listening on' "$out/stdout"; then break; fi
    sleep 0.1
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/stdout")
  [ -n "$port" ] || { echo "server did not start:"; cat "$out/stderr"; exit 1; }
}

stop_server() {
  pkill -INT -f "^$bin --listen 127.0.0.1:0" || true
  wait "$wrapper_pid" || true
}

case "$mode" in
strace)
  command -v strace >/dev/null || { echo "needs strace: apt-get install strace"; exit 1; }
  start strace -f -C -o "$out/strace.txt" "$bin" --listen 127.0.0.1:0
  $load burst 127.0.0.1 "$port" "${CLIENTS:-500}"
  stop_server
  echo "== syscall summary (strace -c)"
  sed -n '/% time/,$p' "$out/strace.txt"
  echo
  echo "== one epoll_wait and the accept batch it started"
  # The first epoll_wait whose turn accepted a batch: its first calls, then a count.
  awk '/epoll_wait/ { if (a >= 8) exit; a = 0; shown = $0; next }
       /accept4/ { a++ }
       a > 0 && a <= 3 { shown = shown "\n" $0 }
       END { print shown; print "... " a " accept4 calls in this turn (each followed by its epoll_ctl ADD; TCP_NODELAY is inherited from the listener)" }' \
    "$out/strace.txt"
  echo "(full trace: $out/strace.txt)"
  ;;
perf)
  command -v perf >/dev/null || { echo "needs perf: apt-get install linux-perf"; exit 1; }
  start "$bin" --listen 127.0.0.1:0
  pid=$wrapper_pid
  perf record -e cpu-clock -g -o "$out/perf.data" -p "$pid" -- sleep "${SECS:-5}" 2> "$out/perf-record.log" &
  perf_pid=$!
  $load steady 127.0.0.1 "$port" 50 512 "${SECS:-5}"
  wait "$perf_pid" || true
  stop_server
  perf report --stdio --no-children -g none --percent-limit 1 -i "$out/perf.data" 2>/dev/null | grep -v "^$" | grep -v "^# *$" | head -50
  echo
  echo "== by object: kernel vs the server's own code"
  perf report --stdio --no-children -g none --sort dso -i "$out/perf.data" 2>/dev/null | grep '%' | head -5
  echo "(full profile: perf report -i $out/perf.data)"
  ;;
*) echo "usage: profile.sh strace|perf"; exit 2 ;;
esac
