"""A TCP proxy in front of PostgreSQL that counts the statements its clients send.

It reads the wire protocol's message frames from client to server and counts simple queries
(`Q`) and extended-protocol executions (`E`): one per statement sent, including `BEGIN` and
`COMMIT`. It imports nothing of the service, so it can measure any checkout's code.
"""

from __future__ import annotations

import asyncio
import struct

_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


class StatementCounter:
    """A TCP proxy to PostgreSQL that counts the statements its clients send."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.statements = 0
        self.server: asyncio.Server | None = None
        self.listen_port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        down = asyncio.create_task(_pipe(up_reader, writer))
        try:
            await self._client_to_server(reader, up_writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            up_writer.close()
            writer.close()
            down.cancel()

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:  # Untyped start-up messages, after zero or more SSL/GSS requests.
            head = await reader.readexactly(8)
            length, code = struct.unpack("!II", head)
            writer.write(head + await reader.readexactly(length - 8))
            if code not in (_SSL_REQUEST, _GSS_REQUEST):
                break
            # The server answers one byte ('N' here: no TLS on loopback) before the next.
        while True:
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if kind in (b"Q", b"E"):
                self.statements += 1
            writer.write(kind + struct.pack("!I", length) + body)
            await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
