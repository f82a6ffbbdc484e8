#!/usr/bin/env bash
# The seed's session: two lines echoed, `quit it` ends it.
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'hello\nlofa\nquit it\n' 'hello\nlofa\n' "hello, lofa, then quit closes"
expect_session 'quit\n' '' "quit alone closes at once"
expect_session 'xquit\n quit\nQUIT\nquiet\n' 'xquit\n quit\nQUIT\nquiet\n' "xquit, ' quit', QUIT, quiet do not close"
stop_server
