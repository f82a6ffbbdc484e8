# Shared by tests/nc/*.sh (sourced, not run: the name does not end in .sh,
# so `make test-nc` skips it). Starts the server on port 0, talks to it with
# OpenBSD nc the way a person would, and checks what comes back.
set -euo pipefail

ECHO_REACTOR=${ECHO_REACTOR:-target/release/echo-reactor}
NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/echo-reactor-nc.XXXXXX")
SERVER_PIDS=()
SERVER_PID=
SERVER_ERR=
PORT=

cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $NAME: $*" >&2
    local f
    for f in "$WORK"/*.err; do
        if [ -s "$f" ]; then
            echo "--- server stderr ($(basename "$f")), last lines:" >&2
            tail -n 20 "$f" >&2
        fi
    done
    exit 1
}

ok() {
    echo "ok: $NAME: $*"
}

if ! nc -h 2>&1 | grep -q -- '-N'; then
    fail "these tests need OpenBSD netcat (nc -N): apt-get install netcat-openbsd"
fi
[ -x "$ECHO_REACTOR" ] || fail "no server binary at $ECHO_REACTOR (run make build)"

# start_server [ARGS...]: starts the server on 127.0.0.1:0 with ARGS and
# reads its `listening on` line (a blocking read on a FIFO, no polling);
# sets SERVER_PID, SERVER_ERR (its stderr log) and PORT.
start_server() {
    local tag="server${#SERVER_PIDS[@]}" line fd
    mkfifo "$WORK/$tag.out"
    "$ECHO_REACTOR" --listen 127.0.0.1:0 "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    SERVER_PID=$!
    SERVER_ERR="$WORK/$tag.err"
    SERVER_PIDS+=("$SERVER_PID")
    # Opening the FIFO waits for the server's end; the fd stays open so the
    # server's stdout never breaks.
    exec {fd}<"$WORK/$tag.out"
    if ! read -r -t 10 line <&"$fd"; then
        fail "no 'listening on' line from $ECHO_REACTOR $*"
    fi
    if [[ ! $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
        fail "first stdout line is not 'listening on 127.0.0.1:PORT': $line"
    fi
    PORT=${BASH_REMATCH[1]}
}

# client [NC_OPTIONS...]: one nc session with stdin as input; -N shuts the
# socket down at stdin's EOF, then nc prints the echo until the server's EOF.
# -w 10 and timeout(1) turn a hang into a failure.
client() {
    timeout 30 nc -N -w 10 "$@" 127.0.0.1 "$PORT"
}

# expect_file EXPECTED ACTUAL WHAT: byte-exact comparison.
expect_file() {
    if ! cmp -s "$1" "$2"; then
        echo "expected ($(wc -c <"$1") bytes):" >&2
        od -c "$1" | head -n 10 >&2
        echo "got ($(wc -c <"$2") bytes):" >&2
        od -c "$2" | head -n 10 >&2
        fail "$3"
    fi
}

# expect_session INPUT EXPECTED WHAT [NC_OPTIONS...]: INPUT and EXPECTED
# are printf formats. nc must exit 0 and print nothing on stderr (a reset
# shows up there).
expect_session() {
    local input=$1 expected=$2 what=$3
    shift 3
    printf "$expected" >"$WORK/expected"
    if ! printf "$input" | client "$@" >"$WORK/got" 2>"$WORK/nc.stderr"; then
        fail "$what: nc failed: $(cat "$WORK/nc.stderr")"
    fi
    [ ! -s "$WORK/nc.stderr" ] || fail "$what: nc said: $(cat "$WORK/nc.stderr")"
    expect_file "$WORK/expected" "$WORK/got" "$what"
    ok "$what"
}

# usr1_stats: sends SIGUSR1 and waits (up to 5 s) for a `stats:` line in
# the server's log; sets STATS to the latest one (` stats: accepted=...`).
usr1_stats() {
    local _
    kill -USR1 "$SERVER_PID"
    STATS=
    for _ in $(seq 100); do
        STATS=$(grep -o ' stats: accepted=.*' "$SERVER_ERR" | grep -v final | tail -n 1 || true)
        [ -n "$STATS" ] && break
        sleep 0.05
    done
    [ -n "$STATS" ] || fail "no stats line after SIGUSR1"
}

# stop_server: SIGTERM; the server must exit 0.
stop_server() {
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server died before the end"
    kill -TERM "$SERVER_PID"
    local status=0
    wait "$SERVER_PID" || status=$?
    [ "$status" -eq 0 ] || fail "server exited $status after SIGTERM"
    ok "server exited 0 on SIGTERM"
}
