#!/usr/bin/env bash
# UDP echo by hand: a line over `nc -u` comes back as it was sent, `quit`
# included (no quit rule on UDP); the same with socat over IPv4 and IPv6
# when socat is installed. nc's -w, socat's -T and timeout(1) bound every
# wait.
source "$(dirname "$0")/lib.bash"

# start_udp_server ADDR...: like start_server, with one UDP socket per ADDR
# and no TCP listener; reads every `listening on ADDR udp` line and sets
# UDP_ADDRS to the addresses.
start_udp_server() {
    local tag="server${#SERVER_PIDS[@]}" line fd addr args=()
    for addr in "$@"; do
        args+=(--udp "$addr")
    done
    mkfifo "$WORK/$tag.out"
    "$ECHO_REACTOR" "${args[@]}" >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    SERVER_PID=$!
    SERVER_ERR="$WORK/$tag.err"
    SERVER_PIDS+=("$SERVER_PID")
    exec {fd}<"$WORK/$tag.out"
    UDP_ADDRS=()
    for addr in "$@"; do
        if ! read -r -t 10 line <&"$fd"; then
            fail "no 'listening on ADDR udp' line for $addr"
        fi
        if [[ ! $line =~ ^listening\ on\ (.+)\ udp$ ]]; then
            fail "stdout line is not 'listening on ADDR udp': $line"
        fi
        UDP_ADDRS+=("${BASH_REMATCH[1]}")
    done
}

# expect_datagram WHAT EXPECTED CMD...: runs CMD (stdin: the datagram) and
# compares its output with EXPECTED, a printf format.
expect_datagram() {
    local what=$1 expected=$2
    shift 2
    printf "$expected" >"$WORK/expected"
    if ! printf "$expected" | timeout 20 "$@" >"$WORK/got" 2>"$WORK/client.stderr"; then
        fail "$what: $1 failed: $(cat "$WORK/client.stderr")"
    fi
    expect_file "$WORK/expected" "$WORK/got" "$what"
    ok "$what"
}

start_udp_server 127.0.0.1:0 '[::1]:0'
v4=${UDP_ADDRS[0]}
v6=${UDP_ADDRS[1]}
v4_port=${v4##*:}
# -W 1: exit once one datagram came back; -w 5: give up after 5 s without
# one. (-q does not wait for the echo in UDP mode: it exits at stdin's EOF.)
expect_datagram "a line over nc -u" 'hello over udp\n' nc -u -W 1 -w 5 127.0.0.1 "$v4_port"
expect_datagram "quit over nc -u is echoed" 'quit\n' nc -u -W 1 -w 5 127.0.0.1 "$v4_port"
datagrams=2
if command -v socat >/dev/null; then
    # -T 5: give up after 5 s without traffic; -t 1: after stdin's EOF,
    # wait a second for the echo.
    expect_datagram "a line over socat (IPv4)" 'socat v4\n' socat -T 5 -t 1 - "UDP:$v4"
    expect_datagram "a line over socat (IPv6)" 'socat v6\n' socat -T 5 -t 1 - "UDP6:$v6"
    datagrams=4
else
    echo "skipped: $NAME: socat is not installed (the socat cases did not run)"
fi
usr1_stats
[[ $STATS == *" udp_in=$datagrams udp_out=$datagrams udp_dropped=0 "* ]] ||
    fail "expected udp_in=udp_out=$datagrams in: $STATS"
ok "stats count $datagrams datagrams in and out"
stop_server
