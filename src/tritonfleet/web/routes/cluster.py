"""The live cluster view: a snapshot, and a server-sent event stream of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from tritonfleet.web.service import WebState, state_of

router = APIRouter(prefix="/api/cluster", tags=["cluster"])
State = Annotated[WebState, Depends(state_of)]
# An event at least this often, so that proxies keep the stream open and a closed tab is noticed.
KEEPALIVE_S = 10.0


@router.get("")
async def snapshot(state: State) -> dict[str, Any]:
    return state.monitor.snapshot()


@router.get("/events")
async def events(request: Request, state: State) -> StreamingResponse:
    """`text/event-stream`: one `data:` line of snapshot JSON each time the monitor looks."""
    return StreamingResponse(
        _stream(request, state),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request, state: WebState) -> AsyncIterator[str]:
    version = -1
    while not await request.is_disconnected():
        snapshot = await state.monitor.next_snapshot(version, KEEPALIVE_S)
        version = snapshot["version"]
        yield f"data: {json.dumps(snapshot, separators=(',', ':'))}\n\n"
