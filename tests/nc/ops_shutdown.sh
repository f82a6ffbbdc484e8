#!/usr/bin/env bash
# Shutdown by hand: SIGTERM with a client connected. The client gets its
# echo and then EOF, new clients are refused, the server exits 0 once the
# client has closed, and logs a `final stats:` line. A second signal ends a
# drain at once; SIGINT works like SIGTERM.
source "$(dirname "$0")/lib.bash"

# wait_log PATTERN FILE: bounded wait for a log line.
wait_log() {
    local _
    for _ in $(seq 200); do
        grep -q -- "$1" "$2" && return 0
        sleep 0.05
    done
    fail "no '$1' in $2 within 10 s"
}

# wait_echo NAME: bounded wait (10 s) until client NAME got some output.
wait_echo() {
    local _
    for _ in $(seq 200); do
        [ -s "$WORK/$1.out" ] && break
        sleep 0.05
    done
}

# A client on a FIFO, so the script decides when its stdin ends.
open_client() {
    mkfifo "$WORK/$1.in"
    timeout 30 nc -N 127.0.0.1 "$PORT" <"$WORK/$1.in" >"$WORK/$1.out" 2>"$WORK/$1.nc.err" &
    CLIENT_PID=$!
    exec {CLIENT_FD}>"$WORK/$1.in"
}

start_server --shutdown-timeout 5
err=$SERVER_ERR
open_client c1
printf 'before the signal\n' >&"$CLIENT_FD"
wait_echo c1
[ "$(cat "$WORK/c1.out")" = "before the signal" ] || fail "no echo before the signal"
kill -TERM "$SERVER_PID"
wait_log 'shutting down: draining 1 connection (at most' "$err"
ok "SIGTERM: draining 1 connection"
refused=no
for _ in $(seq 20); do
    if ! nc -z 127.0.0.1 "$PORT" 2>/dev/null; then refused=yes; break; fi
    sleep 0.05
done
[ "$refused" = yes ] || fail "new connections still accepted after SIGTERM"
ok "new clients refused after SIGTERM"
kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited while a client was still connected"
# The client ends its input; the server has nothing left to do and exits.
exec {CLIENT_FD}>&-
wait "$CLIENT_PID" || fail "nc exited $?: $(cat "$WORK/c1.nc.err")"
printf 'before the signal\n' >"$WORK/c1.expected"
expect_file "$WORK/c1.expected" "$WORK/c1.out" "echo after SIGTERM"
status=0
wait "$SERVER_PID" || status=$?
[ "$status" -eq 0 ] || fail "server exited $status after SIGTERM"
grep -q 'final stats: accepted=1 active=0 .* closed_shutdown=1 ' "$err" || fail "no final stats line with closed_shutdown=1"
ok "server exited 0 with: $(grep -o 'final stats: accepted=[0-9]* active=[0-9]*' "$err")"

# A client that never closes holds the drain; a deliberate second signal ends
# it at once.
start_server --shutdown-timeout 30
err=$SERVER_ERR
open_client c2
printf 'hold\n' >&"$CLIENT_FD"
wait_echo c2
kill -TERM "$SERVER_PID"
wait_log 'shutting down' "$err"
# Deliberate: signals within 1 s of the first are the same request.
sleep 1.2
kill -INT "$SERVER_PID"
started=$(date +%s%N)
status=0
wait "$SERVER_PID" || status=$?
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
[ "$status" -eq 0 ] || fail "server exited $status after the second signal"
[ "$elapsed_ms" -lt 2000 ] || fail "second signal: exit took ${elapsed_ms} ms"
grep -q 'second signal' "$err" || fail "no 'second signal' line"
grep -q 'final stats: ' "$err" || fail "no final stats line after the second signal"
ok "second signal (SIGINT after SIGTERM): exit 0 after ${elapsed_ms} ms"
exec {CLIENT_FD}>&-
wait "$CLIENT_PID" 2>/dev/null || true

# SIGINT (Ctrl-C) with nobody connected: exit 0 at once.
start_server
err=$SERVER_ERR
printf 'x\n' | client >/dev/null || fail "echo before SIGINT"
kill -INT "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
[ "$status" -eq 0 ] || fail "server exited $status after SIGINT"
grep -q 'final stats: accepted=1 ' "$err" || fail "no final stats line after SIGINT"
ok "SIGINT: exit 0 with a final stats line"
