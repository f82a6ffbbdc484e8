#!/usr/bin/env bash
# nc -N shuts down its write side at EOF: the server echoes everything, then closes.
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'a\nb\n' 'a\nb\n' "both lines echoed, then EOF"
expect_session 'no newline at the end' 'no newline at the end' "a line without newline"
expect_session '' '' "empty session"
head -c 3000000 /dev/zero | tr '\0' 'x' >"$WORK/big"
client <"$WORK/big" >"$WORK/big.out" || fail "3 MB half-close: nc failed"
expect_file "$WORK/big" "$WORK/big.out" "3 MB echoed before the close"
ok "3 MB echoed in full before the close"
stop_server
