#!/usr/bin/env bash
# A PROXY listener, with a v1 header typed by hand: the header is removed
# and only what follows is echoed. The plain listener beside it echoes the
# same header as data.
source "$(dirname "$0")/lib.bash"
start_server --proxy-listen 127.0.0.1:0
PLAIN_PORT=$PORT
# start_server read the plain listener's line; the PROXY listener's comes
# next on the same FIFO (bash reads a pipe a byte at a time, so it is still
# there).
exec {out}<"$WORK/server0.out"
read -r -t 10 line <&"$out" || fail "no second 'listening on' line"
if [[ ! $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)\ proxy$ ]]; then
    fail "second stdout line is not 'listening on 127.0.0.1:PORT proxy': $line"
fi
PORT=${BASH_REMATCH[1]}
HEADER='PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\r\n'
expect_session "${HEADER}hello\n" 'hello\n' "v1 header removed, hello echoed"
expect_session "${HEADER}hello\nquit\nbye\n" 'hello\n' "quit right after hello closes"
expect_session "${HEADER}quit\n" '' "quit right after the header closes"
expect_session 'hello\n' '' "no header: closed, nothing echoed"
usr1_stats
[[ $STATS == *" proxy_errors=1"* ]] || fail "proxy_errors should be 1: $STATS"
ok "the missing header counted in proxy_errors"
PORT=$PLAIN_PORT
expect_session "${HEADER}hello\n" "${HEADER}hello\n" "the plain listener echoes the header as data"
stop_server
