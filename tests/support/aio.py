"""Small async helpers the tests share."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    """Every chunk of an async byte stream, joined; the stream is closed whatever happens."""
    out = bytearray()
    async with contextlib.aclosing(stream) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)
