"""A raw HTTP/1.1 client for bodies a normal client would never send: huge, slow, or stalled.

`send_until_answered` writes a body chunk by chunk and looks for the server's answer between
chunks, so the bytes sent before the answer measure how much of the body the server let in.
"""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any


def request_head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    """The request line and headers, ready to send."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_until_answered(
    port: int,
    head: bytes,
    chunk: bytes,
    total: int,
    *,
    pause_s: float = 0.0,
    deadline_s: float = 30.0,
) -> tuple[int, bytes]:
    """Send `head`, then `chunk` again and again up to `total` body bytes or until the server
    answers or closes; returns the body bytes sent and the raw answer."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + deadline_s
        while sent < total and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], pause_s)
            if readable:
                break  # The server has answered.
            try:
                sock.sendall(chunk)
            except OSError:
                break  # The server closed the connection on us: it will not read more.
            sent += len(chunk)
        return sent, read_response(sock)


def read_response(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    """One whole response (head and `Content-Length` body) from `sock`."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def parse_response(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, lower-cased headers and JSON body of a raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, json.loads(body)
