#!/usr/bin/env bash
# --idle-timeout 1: a client that sends nothing stays connected until the
# server closes it about a second later; a client that talks stays open.
source "$(dirname "$0")/lib.bash"
start_server --idle-timeout 1

# nc -d reads no stdin: it just sits on the connection, and exits when the
# server closes it. timeout(1) turns "never closed" into status 124.
started=$(date +%s%N)
status=0
timeout 10 nc -d 127.0.0.1 "$PORT" >"$WORK/idle.out" 2>"$WORK/nc.stderr" || status=$?
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
[ "$status" -ne 124 ] || fail "the server never closed the idle connection (10 s)"
[ "$status" -eq 0 ] || fail "idle nc exited $status: $(cat "$WORK/nc.stderr")"
[ ! -s "$WORK/idle.out" ] || fail "the idle client received data"
[ "$elapsed_ms" -ge 900 ] || fail "closed after ${elapsed_ms} ms, before --idle-timeout 1"
[ "$elapsed_ms" -lt 4000 ] || fail "closed only after ${elapsed_ms} ms with --idle-timeout 1"
ok "idle nc closed by the server after ${elapsed_ms} ms"

# A line every 0.4 s for ~3 s: never idle for 1 s, so every line comes back.
talk() {
    local i
    for i in 1 2 3 4 5 6 7 8; do
        printf 'line %d\n' "$i"
        sleep 0.4
    done
}
talk | client >"$WORK/talk.out" 2>"$WORK/nc.stderr" || fail "talking nc failed: $(cat "$WORK/nc.stderr")"
printf 'line %d\n' 1 2 3 4 5 6 7 8 >"$WORK/talk.expected"
expect_file "$WORK/talk.expected" "$WORK/talk.out" "a line every 0.4 s"
ok "a client sending a line every 0.4 s stayed open for 3 s"

# The stats agree: one idle close, one client close.
usr1_stats
[[ $STATS == *" closed_idle=1 "* ]] || fail "expected closed_idle=1: $STATS"
[[ $STATS == *" closed_client=1 "* ]] || fail "expected closed_client=1: $STATS"
ok "SIGUSR1 stats: closed_idle=1 closed_client=1"
stop_server
