#!/usr/bin/env bash
# Telnet sends \r\n line ends; the quit rule still works.
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'hey there\r\nquit doing that!\r\n' 'hey there\r\n' "telnet CRLF: quit line closes"
# nc -C turns \n into \r\n, as telnet does.
expect_session 'hello\nlofa\nquit it\n' 'hello\r\nlofa\r\n' "nc -C (CRLF) session" -C
stop_server
