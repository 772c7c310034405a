#!/usr/bin/env python3
"""Sequential calls, each on a new client connection, timed per call (connect included).

    egress_client.py direct HOST:PORT CA_FILE N    # HTTPS straight to the origin: new TCP + TLS each call
    egress_client.py proxy  HOST:PORT HOSTNAME N   # plain HTTP to a proxy that originates TLS
"""
import socket
import ssl
import statistics
import sys
import time


def call_direct(addr, ctx):
    host, port = addr
    with socket.create_connection((host, port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="origin.bench.local") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: origin.bench.local\r\nConnection: close\r\n\r\n")
            return read_all(s)


def call_proxy(addr, hostname):
    with socket.create_connection(addr) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        return read_all(s)


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def main():
    mode, target, extra, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    host, port = target.rsplit(":", 1)
    addr = (host, int(port))
    if mode == "direct":
        ctx = ssl.create_default_context(cafile=extra)
        ctx.check_hostname = True
        call = lambda: call_direct(addr, ctx)  # noqa: E731
    else:
        call = lambda: call_proxy(addr, extra)  # noqa: E731
    times, failures = [], 0
    for _ in range(n):
        t = time.perf_counter()
        try:
            resp = call()
            if not resp.startswith(b"HTTP/1.1 200"):
                failures += 1
        except OSError:
            failures += 1
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p99 = times[int(len(times) * 0.99) - 1]
    print(f"mean {statistics.mean(times):.3f} ms, p50 {times[len(times)//2]:.3f} ms, p99 {p99:.3f} ms, failures {failures}/{n}")


if __name__ == "__main__":
    main()
