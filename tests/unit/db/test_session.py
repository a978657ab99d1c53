"""How one process's `DB_MAX_CONNECTIONS` is shared between its pools."""

from __future__ import annotations

import pytest

from upload_service.db.session import ConnectionShares


@pytest.mark.parametrize("maximum", [2, 3, 4, 5, 10, 11, 50, 1000])
def test_the_pools_together_never_exceed_the_maximum_and_each_gets_one(maximum: int) -> None:
    shares = ConnectionShares.of(maximum)
    assert shares.writes + shares.reads == maximum
    assert shares.writes >= 1
    assert shares.reads >= 1


def test_the_default_gives_writes_six_and_reads_four() -> None:
    assert ConnectionShares.of(10) == ConnectionShares(writes=6, reads=4)
