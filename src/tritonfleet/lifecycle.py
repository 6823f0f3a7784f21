"""Closing a service's parts in the reverse order they were opened, on an AsyncExitStack.

A service opens its parts one by one onto a stack (`contextlib.AsyncExitStack`): when one fails
to start, closing the stack closes those opened before it, so nothing leaks. A part that fails
to close is logged with what it was, and the parts after it still close.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

log = logging.getLogger(__name__)


def close_on_exit(stack: AsyncExitStack, part: str, close: Callable[[], Awaitable[object] | object]) -> None:
    """Run `close` (sync or async) when the stack closes; log instead of raising if it fails."""

    async def close_logged() -> None:
        try:
            closed = close()
            if inspect.isawaitable(closed):
                await closed
        except Exception:
            log.warning("closing the %s failed", part, exc_info=True, extra={"part": part})

    stack.push_async_callback(close_logged)
