#!/usr/bin/env bash
# Profiles the release server under a scripted load.
#   profile.sh strace   strace -f during a burst of connects: syscall summary,
#                       then one epoll_wait followed by its batch of accept4 calls
#   profile.sh perf     perf record -e cpu-clock -g during steady echo load,
#                       then the top of perf report
# The server it starts is stopped by its pid, never by a name pattern: other
# servers on the machine, started the same way, are left alone.
# Environment: ECHO_REACTOR (the binary), PROFILE_OUT (target/profile),
# CLIENTS (strace burst, 500), SECS (perf, 5), PERF_USER_ONLY=1 (profile
# anyway when kernel frames cannot be seen).
set -euo pipefail
mode=${1:?usage: profile.sh strace|perf}
bin=${ECHO_REACTOR:-target/release/echo-reactor}
load="python3 $(dirname "$0")/load.py"
out=${PROFILE_OUT:-target/profile}
mkdir -p "$out"
wrapper_pid=
server_pid=

# Stops what this script started, by pid, if it is still running.
cleanup() {
  [ -z "$server_pid" ] || kill -INT "$server_pid" 2>/dev/null || true
  [ -z "$wrapper_pid" ] || kill "$wrapper_pid" 2>/dev/null || true
}
trap cleanup EXIT

# Starts the server (under the given wrapper, or none) and sets $port,
# $wrapper_pid (what was started) and $server_pid (the server itself).
start() {
  rm -f "$out/stdout"
  "$@" > "$out/stdout" 2> "$out/stderr" &
  wrapper_pid=$!
  for _ in $(seq 100); do
    if grep -q '^listening on' "$out/stdout"; then break; fi
    sleep 0.1
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/stdout")
  [ -n "$port" ] || { echo "server did not start:"; cat "$out/stderr"; exit 1; }
  # Started bare, the server is the process started; under a wrapper
  # (strace), the wrapper's one child.
  server_pid=$wrapper_pid
  if [ "$1" != "$bin" ]; then
    server_pid=$(pgrep -P "$wrapper_pid" | head -1 || true)
  fi
  local exe
  exe=$(readlink "/proc/$server_pid/exe" 2>/dev/null || true)
  [ "$exe" = "$(readlink -f "$bin")" ] || {
    echo "cannot find the server's pid (pid ${server_pid:-none} runs ${exe:-nothing})"; exit 1; }
}

stop_server() {
  kill -INT "$server_pid"
  wait "$wrapper_pid" || true
  server_pid=
  wrapper_pid=
}

# Prints why perf cannot see kernel frames here, and how to fix it; nothing
# if it can: perf_event_paranoid <= 1, or CAP_PERFMON or CAP_SYS_ADMIN (root).
kernel_frames_hidden() {
  local paranoid caps
  paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
  caps=16#$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  # CAP_SYS_ADMIN is bit 21, CAP_PERFMON bit 38.
  if [ "$paranoid" -le 1 ] || (( (caps >> 21 & 1) || (caps >> 38 & 1) )); then
    return
  fi
  echo "perf cannot see kernel frames: kernel.perf_event_paranoid is $paranoid and"
  echo "$(id -un) is not root (no CAP_PERFMON), so the profile would show user space"
  echo "only (the server and libc), while most of the server's time is in the kernel."
  echo "Fix: sudo sysctl kernel.perf_event_paranoid=1 (until reboot), or run as root."
  echo "PERF_USER_ONLY=1 profiles user space anyway."
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
  hidden=$(kernel_frames_hidden)
  if [ -n "$hidden" ]; then
    echo "$hidden" >&2
    [ "${PERF_USER_ONLY:-}" = 1 ] || exit 1
  fi
  command -v perf >/dev/null || { echo "needs perf: apt-get install linux-perf"; exit 1; }
  start "$bin" --listen 127.0.0.1:0
  perf record -e cpu-clock -g -o "$out/perf.data" -p "$server_pid" -- sleep "${SECS:-5}" 2> "$out/perf-record.log" &
  perf_pid=$!
  $load steady 127.0.0.1 "$port" 50 512 "${SECS:-5}"
  wait "$perf_pid" || true
  stop_server
  if [ -n "$hidden" ]; then
    echo "== USER SPACE ONLY: kernel frames are not in this profile (see above)"
  fi
  perf report --stdio --no-children -g none --percent-limit 1 -i "$out/perf.data" 2>/dev/null | grep -v "^$" | grep -v "^# *$" | head -50
  echo
  echo "== by object: kernel vs the server's own code"
  by_object=$(perf report --stdio --no-children -g none --sort dso -i "$out/perf.data" 2>/dev/null | grep '%' | head -5)
  echo "$by_object"
  if ! grep -q 'kernel' <<< "$by_object"; then
    echo "WARNING: no kernel samples in this profile: perf could not see kernel frames"
    echo "(perf_event_paranoid, a container, or a missing kernel symbol map); the"
    echo "shares above are of user space only. $out/perf-record.log may say why."
  fi
  echo "(full profile: perf report -i $out/perf.data)"
  ;;
*) echo "usage: profile.sh strace|perf"; exit 2 ;;
esac
