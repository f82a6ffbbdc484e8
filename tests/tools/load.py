#!/usr/bin/env python3
"""A small load for `make strace` and `make perf` (no Rust build needed).

  load.py burst HOST PORT N          N clients connect at once, echo one line each
  load.py steady HOST PORT C L SECS  C clients echo L-byte messages for SECS seconds

Exits non-zero if any echo is wrong or missing. For real measurements use
`make bench` (echo-bench); this only has to make the server do its work.
"""
import selectors
import socket
import sys
import time


def connect_all(host, port, n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
    return socks


def burst(host, port, n):
    socks = connect_all(host, port, n)
    sel = selectors.DefaultSelector()
    line = b"hello from the burst\n"
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE, bytearray())
    done, deadline = 0, time.time() + 30
    while done < n and time.time() < deadline:
        for key, mask in sel.select(timeout=1):
            s, got = key.fileobj, key.data
            if mask & selectors.EVENT_WRITE:
                s.send(line)
                sel.modify(s, selectors.EVENT_READ, got)
                continue
            chunk = s.recv(4096)
            got += chunk
            if len(got) >= len(line) or not chunk:
                if bytes(got) != line:
                    sys.exit(f"bad echo: {bytes(got)!r}")
                sel.unregister(s)
                s.close()
                done += 1
    print(f"burst: {done}/{n} clients echoed")
    sys.exit(0 if done == n else 1)


def steady(host, port, conns, size, secs):
    socks = connect_all(host, port, conns)
    sel = selectors.DefaultSelector()
    msg = bytes((i % 250) + 1 for i in range(size)).replace(b"q", b"Q")
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE, None)
    received = {s: 0 for s in socks}
    requests, end = 0, time.time() + secs
    while time.time() < end:
        for key, mask in sel.select(timeout=1):
            s = key.fileobj
            if mask & selectors.EVENT_WRITE:
                s.send(msg)
                sel.modify(s, selectors.EVENT_READ)
                continue
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("server closed a connection")
            received[s] += len(chunk)
            if received[s] == size:
                received[s] = 0
                requests += 1
                s.send(msg)
    print(f"steady: {requests} requests in {secs}s over {conns} connections")


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "burst":
        burst(host, port, int(sys.argv[4]))
    else:
        steady(host, port, int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
