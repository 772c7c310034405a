#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, makes one request on each, then holds them all idle
until its standard input closes; prints `open N` once they are all idle.

    idle_conns.py h1 http://127.0.0.1:PORT/ N     # HTTP/1.1 keep-alive
    idle_conns.py h2 https://127.0.0.1:PORT/ N    # HTTP/2 over TLS (ALPN h2)

The HTTP/2 client is the least the protocol asks: the preface, an empty SETTINGS, one GET on
stream 1 (HPACK: indexed :method GET, :scheme https, :path /, a literal :authority), a SETTINGS
ACK for the server's, read until the stream ends.
"""
import socket
import ssl
import struct
import sys
from urllib.parse import urlsplit


def read_h1(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.split(b"\r\n")[0].decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed")
        body += chunk


def open_h1(host, port):
    s = socket.create_connection((host, port))
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    read_h1(s)
    return s


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def open_h2(host, port, ctx):
    raw = socket.create_connection((host, port))
    s = ctx.wrap_socket(raw, server_hostname="bench.local")
    if s.selected_alpn_protocol() != "h2":
        raise OSError(f"ALPN {s.selected_alpn_protocol()}")
    authority = f"{host}:{port}".encode()
    # :method GET (2), :scheme https (7), :path / (4), :authority literal without indexing (1)
    block = bytes([0x82, 0x87, 0x84, 0x01, len(authority)]) + authority
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    while True:
        head = recv_exact(s, 9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
        recv_exact(s, length)
        if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
            s.sendall(frame(4, 1, 0))
        if kind == 3 and stream == 1:  # RST_STREAM
            raise OSError("stream reset")
        if kind == 7:  # GOAWAY
            raise OSError("goaway")
        if stream == 1 and kind in (0, 1) and flags & 1:  # DATA or HEADERS with END_STREAM
            return s


def main():
    proto, url, n = sys.argv[1], urlsplit(sys.argv[2]), int(sys.argv[3])
    host, port = url.hostname, url.port
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    conns, error = [], ""
    for _ in range(n):
        try:
            conns.append(open_h1(host, port) if proto == "h1" else open_h2(host, port, ctx))
        except OSError as e:
            error = str(e)
            break
    print(f"open {len(conns)} {error}".strip(), flush=True)
    sys.stdin.read()
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
