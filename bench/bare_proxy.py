"""Bare proxies to one upstream, to choose the gateway's stack by measurement.

No scheduler, metrics, logging or retries: only what any proxy must do (read the request,
one upstream exchange over a keep-alive connection, copy the answer back). Each side is
swappable, so that `bench.overhead --stacks` can put the combinations side by side:

  --server aiohttp   aiohttp.web, as the gateway            raw   asyncio.Protocol + httptools
           uvicorn  uvicorn (httptools) and a bare ASGI app
  --client aiohttp   aiohttp.ClientSession, as the gateway  httpx httpx.AsyncClient
           raw       a hand-kept pool of asyncio.Protocol connections parsed by httptools
  --loop   uvloop | asyncio

    .venv/bin/python -m bench.bare_proxy --port 9000 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import httpx
import uvicorn
import uvloop
from aiohttp import web

from tritonfleet.proxy import HOP_BY_HOP

Headers = list[tuple[str, str]]
# (method, path and query, end-to-end headers, body) -> (status, end-to-end headers, body)
Exchange = Callable[[str, str, Headers, bytes], Awaitable[tuple[int, Headers, bytes]]]


def _end_to_end(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


# --- clients -----------------------------------------------------------------------------------


def aiohttp_client(upstream: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, skip_auto_headers=("User-Agent",)
    )

    async def exchange(method: str, path: str, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        async with session.request(method, upstream + path, data=body or None, headers=headers) as up:
            return up.status, _end_to_end(list(up.headers.items())), await up.read()

    return exchange, session.close


def httpx_client(upstream: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(base_url=upstream, limits=httpx.Limits(max_connections=None))

    async def exchange(method: str, path: str, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        # Streamed, to relay the body as sent (a gzip answer stays gzip, as with the others).
        answer = await client.send(
            client.build_request(method, path, content=body, headers=headers), stream=True
        )
        try:
            payload = b"".join([chunk async for chunk in answer.aiter_raw()])
        finally:
            await answer.aclose()
        return answer.status_code, _end_to_end(list(answer.headers.items())), payload

    return exchange, client.aclose


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, Headers, bytes]] | None = None
        self.headers: Headers = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionResetError("upstream closed the connection"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(
                (self.parser.get_status_code(), _end_to_end(self.headers), b"".join(self.body))
            )

    def send(self, request: bytes) -> asyncio.Future[tuple[int, Headers, bytes]]:
        assert self.transport is not None
        self.headers, self.body = [], []
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)


def raw_client(upstream: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    parts = urlsplit(upstream)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    host_header = f"Host: {parts.netloc}\r\n"
    idle: list[_Upstream] = []

    async def exchange(method: str, path: str, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        conn = idle.pop() if idle else None
        if conn is None or conn.transport is None:
            _, conn = await asyncio.get_running_loop().create_connection(_Upstream, host, port)
        head = f"{method} {path} HTTP/1.1\r\n{host_header}Content-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        answer = await conn.send(head.encode("latin-1") + body)
        if conn.parser.should_keep_alive():
            idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return answer

    async def close() -> None:
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()

    return exchange, close


CLIENTS = {"aiohttp": aiohttp_client, "httpx": httpx_client, "raw": raw_client}


# --- servers -----------------------------------------------------------------------------------


async def aiohttp_server(exchange: Exchange, host: str, port: int) -> Callable[[], Awaitable[None]]:
    async def handle(request: web.Request) -> web.Response:
        headers = _end_to_end(list(request.headers.items()))
        status, out, body = await exchange(request.method, request.raw_path, headers, await request.read())
        return web.Response(status=status, body=body, headers=out)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner.cleanup


class _Downstream(asyncio.Protocol):
    """One client connection: parse with httptools, answer in order, one request at a time."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.queue: asyncio.Queue[tuple[str, str, Headers, bytes, bool]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        request = (method, self.url.decode("latin-1"), _end_to_end(self.headers), b"".join(self.body))
        self.queue.put_nowait((*request, self.parser.should_keep_alive()))

    async def _serve(self) -> None:
        while self.transport is not None:
            method, path, headers, body, keep_alive = await self.queue.get()
            try:
                status, out, payload = await self.exchange(method, path, headers, body)
            except (OSError, httptools.HttpParserError):
                status, out, payload = 502, [], b""
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in out) + "\r\n"
            if self.transport is None:
                return
            self.transport.write(head.encode("latin-1") + payload)
            if not keep_alive:
                self.transport.close()


async def raw_server(exchange: Exchange, host: str, port: int) -> Callable[[], Awaitable[None]]:
    server = await asyncio.get_running_loop().create_server(lambda: _Downstream(exchange), host, port)

    async def close() -> None:
        server.close()

    return close


async def uvicorn_server(exchange: Exchange, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """uvicorn's httptools protocol with a bare ASGI app: no framework in between."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        headers = _end_to_end([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]])
        status, out, payload = await exchange(scope["method"], path, headers, b"".join(chunks))
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    config = uvicorn.Config(
        app, host=host, port=port, loop="none", http="httptools", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    # Serves from the next loop turn; the benchmark polls until it answers.
    task = asyncio.get_running_loop().create_task(server.serve())

    async def close() -> None:
        server.should_exit = True
        await task

    return close


SERVERS = {"aiohttp": aiohttp_server, "raw": raw_server, "uvicorn": uvicorn_server}


async def serve(server: str, client: str, upstream: str, port: int) -> None:
    exchange, close_client = CLIENTS[client](upstream)
    close_server = await SERVERS[server](exchange, "127.0.0.1", port)
    try:
        await asyncio.Event().wait()
    finally:
        await close_server()
        await close_client()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--server", choices=sorted(SERVERS), default="aiohttp")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    try:
        run(serve(args.server, args.client, args.upstream.rstrip("/"), args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
