#!/usr/bin/env bash
# --no-quit: pure RFC 862 echo.
source "$(dirname "$0")/lib.bash"
start_server --no-quit
expect_session 'hello\nquit\nafter\n' 'hello\nquit\nafter\n' "--no-quit echoes quit lines"
expect_session 'quit' 'quit' "--no-quit: quit at EOF echoed"
stop_server
