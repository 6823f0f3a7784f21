"""The manager's HTTP server, on a socket bound before it serves (so its port is known first)."""

from __future__ import annotations

import socket

from aiohttp import web

from tritonfleet.net import SERVER_IDLE_TIMEOUT_S


class HttpServer:
    """Serves an aiohttp app on a socket bound at once, so that the port is known before serving."""

    def __init__(self, app: web.Application, host: str, port: int, shutdown_timeout_s: float) -> None:
        self.runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=shutdown_timeout_s,
            keepalive_timeout=SERVER_IDLE_TIMEOUT_S,
        )
        self.sock = socket.create_server((host, port))
        self.port: int = self.sock.getsockname()[1]
        self._started = False

    async def start(self) -> None:
        await self.runner.setup()
        self._started = True
        await web.SockSite(self.runner, self.sock).start()

    async def aclose(self) -> None:
        """Stop accepting, let handlers finish up to shutdown_timeout_s, cancel the stragglers."""
        if self._started:
            await self.runner.cleanup()
        self.sock.close()
