#!/usr/bin/env bash
# quit by hand: the line starting with `quit` ends the session, nothing from
# it on is echoed, input sent after it is discarded without a reset, and the
# server counts each such close as closed_quit.
source "$(dirname "$0")/lib.bash"
start_server
expect_session 'hello\nquit\nignored after quit\n' 'hello\n' "quit ends the session; nothing from the quit line on"
expect_session 'quit now please\nmore\n' '' "quit as the first line: nothing echoed"

# 1 MB more after the quit line: the server drains it (lingering close), so
# nc sees a clean EOF, not a reset, and gets only the first line.
{ printf 'first\nquit\n'; head -c 1000000 /dev/zero | tr '\0' 'y'; } >"$WORK/after_quit"
client <"$WORK/after_quit" >"$WORK/after_quit.out" 2>"$WORK/nc.stderr" || fail "nc failed: $(cat "$WORK/nc.stderr")"
[ ! -s "$WORK/nc.stderr" ] || fail "nc said: $(cat "$WORK/nc.stderr")"
printf 'first\n' >"$WORK/after_quit.expected"
expect_file "$WORK/after_quit.expected" "$WORK/after_quit.out" "1 MB after quit is discarded"
ok "1 MB sent after quit is discarded; clean EOF"

# Three quit sessions so far: SIGUSR1 says so.
usr1_stats
[[ $STATS == *" accepted=3 "* ]] || fail "expected accepted=3: $STATS"
[[ $STATS == *" closed_quit=3 "* ]] || fail "expected closed_quit=3: $STATS"
ok "SIGUSR1 stats: closed_quit=3"
stop_server
