"""Throughput of the streaming multipart reader on an in-memory body.

Run: `.venv/bin/python bench/bench_multipart.py [--size-mib 256] [--chunk-kib 64]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from upload_service.documents.multipart import MultipartFileStream
from upload_service.documents.sniff import ContentSniffer

BOUNDARY = "----bench7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def build_body(size: int) -> tuple[bytes, int]:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-"
    ).encode()
    # Random bytes: CRs fall anywhere, as in real PDFs and images, so partial boundaries occur.
    return head + os.urandom(size - 5) + f"\r\n--{BOUNDARY}--\r\n".encode(), size


async def from_list(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def fresh_copies(body: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(body), chunk_size):
        yield bytes(view[start : start + chunk_size])  # a new object each time, as from a socket


async def read(body: AsyncIterator[bytes], *, checks: bool) -> int:
    reader = MultipartFileStream(CONTENT_TYPE, body)
    await reader.open()
    digest = hashlib.sha256()
    sniffer = ContentSniffer(".pdf", [".pdf"])
    total = 0
    async for chunk in reader.chunks():
        total += len(chunk)
        if checks:
            digest.update(chunk)
            sniffer.feed(chunk)
    if checks:
        sniffer.finish()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chunk_size = args.chunk_kib * 1024
    body, file_size = build_body(args.size_mib * 1024 * 1024)
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    print(f"body {len(body) / 2**20:.1f} MiB in {len(chunks)} chunks of {args.chunk_kib} KiB")

    def best(label: str, run: Callable[[], Coroutine[Any, Any, int]]) -> None:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            assert asyncio.run(run()) == file_size
            times.append(time.perf_counter() - start)
        seconds = min(times)
        rate = file_size / seconds / 1e6
        print(f"{label:<38} {rate:8.0f} MB/s  ({seconds:.3f} s, best of {args.repeat})")

    best("reader only", lambda: read(from_list(chunks), checks=False))
    best("reader + sha256 + sniffer", lambda: read(from_list(chunks), checks=True))
    start = time.perf_counter()
    hashlib.sha256(body).digest()
    rate = len(body) / (time.perf_counter() - start) / 1e6
    print(f"{'sha256 alone (reference)':<38} {rate:8.0f} MB/s")

    tracemalloc.start()
    asyncio.run(read(fresh_copies(body, chunk_size), checks=True))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak traced memory while reading fresh chunks: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
