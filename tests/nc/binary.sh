#!/usr/bin/env bash
# Binary data round trip, compared by checksum.
source "$(dirname "$0")/lib.bash"
start_server
for i in $(seq 0 255); do printf "\\$(printf '%03o' "$i")"; done >"$WORK/all.bin"
[ "$(wc -c <"$WORK/all.bin")" -eq 256 ] || fail "could not build the 256-byte file"
client <"$WORK/all.bin" >"$WORK/all.out" || fail "nc failed"
expect_file "$WORK/all.bin" "$WORK/all.out" "every byte value"
ok "all 256 byte values (NUL, 0xFF, ...) echoed"
# Random data; a line starting with `quit` would end the session, so draw
# again in the (tiny) chance there is one.
for attempt in 1 2 3 4 5; do
    head -c 8388608 /dev/urandom >"$WORK/random.bin"
    LC_ALL=C grep -aq '^quit' "$WORK/random.bin" || break
done
client <"$WORK/random.bin" >"$WORK/random.out" || fail "nc failed on 8 MiB"
want=$(sha256sum <"$WORK/random.bin" | cut -d' ' -f1)
got=$(sha256sum <"$WORK/random.out" | cut -d' ' -f1)
[ "$want" = "$got" ] || fail "8 MiB random: sha256 $got, want $want ($(wc -c <"$WORK/random.out") bytes back)"
ok "8 MiB random binary, sha256 matches"
stop_server
