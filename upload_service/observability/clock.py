"""UTC timestamps as the contract writes them (`2026-01-15T10:30:00Z`), cheaply.

Formatting a datetime costs more than most of a probe's answer; the text of the current second
is made once and reused until the second changes.
"""

from __future__ import annotations

import time

# One tuple, replaced whole, so a thread never pairs one second with another second's text.
_last: tuple[int, str] = (-1, "")


def utc_second(moment: float) -> str:
    """`moment` (a Unix time) to the second, as `YYYY-MM-DDTHH:MM:SSZ`."""
    global _last  # the one-entry cache
    second = int(moment)
    cached_second, text = _last
    if second != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        _last = (second, text)
    return text


def utc_millisecond(moment: float) -> str:
    """`moment` to the millisecond, as `YYYY-MM-DDTHH:MM:SS.mmmZ` (log lines)."""
    second = int(moment)
    return f"{utc_second(second)[:-1]}.{int((moment - second) * 1000):03d}Z"


def utc_now() -> str:
    """The current second."""
    return utc_second(time.time())
