"""Part-sized buffers go back to the OS when freed, even with small objects allocated between."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter: memory an earlier test freed (and the allocator kept) would be
# reused by the buffers below and hide how much they add.
CLAIM = textwrap.dedent(
    """
    from pathlib import Path

    from upload_service.runtime.allocator import map_large_buffers

    MIB = 1024 * 1024


    def rss_bytes() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


    assert map_large_buffers()
    # Raise glibc's dynamic threshold the way a first upload would, had it not been fixed.
    warm = bytearray(8 * MIB)
    del warm
    before = rss_bytes()
    buffers, between = [], []
    for _ in range(8):
        buffer = bytearray(8 * MIB)
        buffer[::4096] = b"x" * len(buffer[::4096])  # touch every page
        buffers.append(buffer)
        between.append(b"y" * 200_000)  # small blocks that outlive the buffers
    # Other work of the process (a collection, say) moves RSS a little either way.
    held = rss_bytes()
    assert held - before >= 48 * MIB, (held - before) // MIB
    buffers.clear()
    assert held - rss_bytes() >= 48 * MIB, (held - rss_bytes()) // MIB
    assert len(between) == 8
    """
)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_part_buffers_leave_the_process() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLAIM], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
