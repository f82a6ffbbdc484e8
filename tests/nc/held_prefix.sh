#!/usr/bin/env bash
# Bytes that could still become `quit` are held, and echoed when the client ends the stream.
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'qui' 'qui' "held 'qui' echoed at EOF"
expect_session 'q' 'q' "held 'q' echoed at EOF"
expect_session 'hello\nqu' 'hello\nqu' "held 'qu' after a line echoed at EOF"
expect_session 'hello\nquit' 'hello\n' "'quit' without newline at EOF still closes"
stop_server
