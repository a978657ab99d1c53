"""How one process's `DB_MAX_CONNECTIONS` is shared between its pools."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as SATimeoutError

from upload_service.db.session import POOL_TIMEOUT_S, ConnectionShares, create_engine


@pytest.mark.parametrize("maximum", [2, 3, 4, 5, 10, 11, 50, 1000])
def test_the_pools_together_never_exceed_the_maximum_and_each_gets_one(maximum: int) -> None:
    shares = ConnectionShares.of(maximum)
    assert shares.writes + shares.reads == maximum
    assert shares.writes >= 1
    assert shares.reads >= 1


@pytest.mark.parametrize("maximum", [3, 4, 5, 10, 11, 50, 1000])
def test_the_listening_connection_is_counted_in_the_maximum(maximum: int) -> None:
    shares = ConnectionShares.of(maximum, listener=True)
    assert shares.writes + shares.reads + shares.listen == maximum
    assert shares.listen == 1
    assert shares.writes >= 1
    assert shares.reads >= 1


def test_the_default_gives_writes_six_and_reads_four() -> None:
    assert ConnectionShares.of(10) == ConnectionShares(writes=6, reads=4)
    # On PostgreSQL the LISTEN connection is one of the writers' six.
    assert ConnectionShares.of(10, listener=True) == ConnectionShares(writes=5, reads=4, listen=1)


async def test_an_sqlite_pool_holds_its_share_and_never_more(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cap.db'}", pool_size=2)
    try:
        async with engine.connect(), engine.connect():
            started = time.monotonic()
            with pytest.raises(SATimeoutError):
                async with engine.connect():
                    pass
            assert time.monotonic() - started == pytest.approx(POOL_TIMEOUT_S, abs=1.5)
    finally:
        await engine.dispose()


async def test_an_sqlite_connection_goes_back_to_the_pool_without_a_rollback_of_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each rollback is a thread hop on aiosqlite; the session's commit already ended the
    # transaction, and a connection closed inside one rolls it back itself.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'reset.db'}", echo_pool="debug")
    try:
        with caplog.at_level(logging.DEBUG, logger="sqlalchemy.pool"):
            async with engine.connect() as conn:
                await conn.execute(text("CREATE TABLE t (x INTEGER)"))
                await conn.commit()
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))  # left open: rolled back
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
        assert rows == 0
        assert not [r for r in caplog.records if "rollback-on-return" in r.getMessage()]
    finally:
        await engine.dispose()
