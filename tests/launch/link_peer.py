"""Two ranks under `rdmacoll-run --link` talk TCP over the link (rank 0 listens on its link
address from RDMACOLL_ADDR, rank 1 connects). Every wait has a deadline of 20 s.

usage: link_peer.py transfer BYTES   rank 1 sends BYTES; rank 0 prints "received N bytes, Mbit/s X",
                                     timed from the first byte to the end
       link_peer.py pingpong BYTES   rank 1 sends BYTES and waits for a 1-byte answer, 15 times with
                                     pauses (so tbf's token bucket is full each time); it prints
                                     "round trip us X", the median
"""
import os
import socket
import statistics
import sys
import time

PORT = 5001
DEADLINE_S = 20


def recv_exactly(c, k):
    while k > 0:
        d = c.recv(k)
        if not d:
            sys.exit("link_peer.py: the peer closed the connection early")
        k -= len(d)


def accept(host):
    s = socket.create_server((host, PORT))
    s.settimeout(DEADLINE_S)
    c, _ = s.accept()
    c.settimeout(DEADLINE_S)
    return c


def connect(host):
    deadline = time.monotonic() + DEADLINE_S
    while True:  # rank 0 may not be listening yet
        try:
            c = socket.create_connection((host, PORT), timeout=5)
            c.settimeout(DEADLINE_S)
            return c
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    host = os.environ["RDMACOLL_ADDR"].split(":")[0]
    rank0 = os.environ["RDMACOLL_RANK"] == "0"
    c = accept(host) if rank0 else connect(host)
    if mode == "transfer":
        if not rank0:
            c.sendall(b"x" * n)
            return 0
        got, t0 = 0, None
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            t0 = t0 or time.monotonic()
            got += len(d)
        print("received %d bytes, Mbit/s %.2f" % (got, got * 8 / (time.monotonic() - t0) / 1e6))
        return int(got != n)
    if mode == "pingpong":
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(15):
            if rank0:
                recv_exactly(c, n)
                c.sendall(b"k")
                continue
            time.sleep(0.02)
            t = time.monotonic()
            c.sendall(b"x" * n)
            recv_exactly(c, 1)
            times.append(time.monotonic() - t)
        if times:
            print("round trip us %.0f" % (statistics.median(times) * 1e6))
        return 0
    sys.exit("link_peer.py: unknown mode " + mode)


if __name__ == "__main__":
    sys.exit(main())
