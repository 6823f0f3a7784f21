"""Many client connections held open at once against a gateway, each asking one request."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def held_connections(
    host: str, port: int, count: int, path: str, body: str, concurrency: int
) -> dict[str, Any]:
    """Open `count` connections and keep them all open; two rounds of one POST of `body` to
    `path` on each, `concurrency` at a time. Every failure is counted by kind, never raised."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    errors: dict[str, int] = {}

    def failed(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(concurrency)

    async def connect() -> None:
        async with gate:
            try:
                connections.append(await asyncio.wait_for(asyncio.open_connection(host, port), 10))
            except (OSError, TimeoutError) as exc:
                failed(f"connect: {type(exc).__name__}")

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with gate:
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if status != 200:
                    failed(f"status {status}")
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
                failed(f"request: {type(exc).__name__}")

    began = time.monotonic()
    await asyncio.gather(*(connect() for _ in range(count)))
    opened_s = time.monotonic() - began
    rounds = []
    for _ in range(2):
        began = time.monotonic()
        await asyncio.gather(*(ask(reader, writer) for reader, writer in connections))
        rounds.append(round(time.monotonic() - began, 2))
    for _, writer in connections:
        writer.close()
    return {
        "connections": count,
        "held": len(connections),
        "open_s": round(opened_s, 2),
        "round_s": rounds,
        "errors": errors,
    }
