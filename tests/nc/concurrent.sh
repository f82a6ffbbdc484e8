#!/usr/bin/env bash
# Several nc clients at once, each gets exactly its own echo.
source "$(dirname "$0")/lib.bash"
start_server
N=20
pids=()
for i in $(seq 1 "$N"); do
    for j in $(seq 1 500); do echo "client $i line $j"; done >"$WORK/in.$i"
    client <"$WORK/in.$i" >"$WORK/out.$i" 2>"$WORK/err.$i" &
    pids+=($!)
done
for i in $(seq 1 "$N"); do
    wait "${pids[$((i - 1))]}" || fail "client $i: nc failed: $(cat "$WORK/err.$i")"
    expect_file "$WORK/in.$i" "$WORK/out.$i" "client $i"
done
ok "$N concurrent clients each got their own 500 lines"
expect_session 'still serving\n' 'still serving\n' "server still serves afterwards"
stop_server
