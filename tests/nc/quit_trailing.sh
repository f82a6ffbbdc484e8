#!/usr/bin/env bash
# Bytes after the quit line are dropped; the client still gets the echo before it, then EOF (no reset).
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'hello\nquit\nthis is ignored\nand this\n' 'hello\n' "lines after quit are not echoed"
{ printf 'hello\nquit\n'; head -c 4000000 /dev/zero; } >"$WORK/input"
printf 'hello\n' >"$WORK/expected"
client <"$WORK/input" >"$WORK/got" 2>"$WORK/nc.stderr" || fail "4 MB after quit: nc failed: $(cat "$WORK/nc.stderr")"
[ ! -s "$WORK/nc.stderr" ] || fail "4 MB after quit: nc said: $(cat "$WORK/nc.stderr")"
expect_file "$WORK/expected" "$WORK/got" "4 MB after quit"
ok "4 MB after the quit line: echo before it arrives, clean EOF"
stop_server
