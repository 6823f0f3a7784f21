"""Runs the control-plane services' ASGI apps (FastAPI) under uvicorn with uvloop."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def serve_asgi(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, drains and runs the lifespan exit."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # Control-plane requests are short; a held watch must not delay a stop by its whole timeout.
        timeout_graceful_shutdown=1,
    )
