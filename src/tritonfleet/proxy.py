"""One upstream HTTP exchange, shared by the gateway and the node manager's forwarding mode.

Bodies travel byte for byte in both directions: the client session must be created with
`auto_decompress=False` (see `new_session`), and only hop-by-hop headers are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1 connection-specific headers, plus those aiohttp recomputes for each hop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "date",
        "server",
    }
)


class UpstreamError(Exception):
    """The upstream gave no HTTP answer.

    UpstreamError
    ├── UpstreamUnavailable   connection refused or reset, or a broken answer: retry elsewhere
    └── UpstreamTimeout       the deadline ran out
    """


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


# With `relay`, an answer up to this size is still read whole (one write to the client, the
# common case of small tensors); a longer one, or one of unknown length (a stream of events),
# is relayed as it comes, so that the gateway holds a chunk of it at a time.
WHOLE_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    # The answer still being read from the upstream, for `rest_of`; None: `body` is all of it.
    pending: aiohttp.ClientResponse | None = None


def new_session(connect_timeout_s: float, limit_per_host: int = 0) -> aiohttp.ClientSession:
    """A keep-alive client session that never decompresses nor rewrites what it relays."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(sock_connect=connect_timeout_s),
    )


def end_to_end(headers: Mapping[str, str] | CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The headers that belong to the message rather than to one connection."""
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in HOP_BY_HOP:
            kept.add(name, value)
    return kept


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    headers: CIMultiDict[str],
    timeout_s: float,
    relay_idle_s: float | None = None,
) -> Reply:
    """Send one request and read the answer, mapping transport failures to UpstreamError: the
    whole answer within `timeout_s`; or, with `relay_idle_s`, its head within `timeout_s` and,
    when it is a long or open-ended 200, the rest left pending for `rest_of`, each read of it
    within `relay_idle_s` (a stream may outlast any deadline while it keeps coming)."""
    if relay_idle_s is None:
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=session.timeout.sock_connect)
    else:
        # No total: the deadline bounds the whole answer only when it is read whole (below).
        timeout = aiohttp.ClientTimeout(sock_connect=session.timeout.sock_connect, sock_read=relay_idle_s)
    try:
        async with asyncio.timeout(timeout_s if relay_idle_s else None) as within:
            resp = await session.request(
                method, url, data=body or None, headers=headers, timeout=timeout, allow_redirects=False
            )
            length = resp.content_length
            if relay_idle_s and resp.status == 200 and (length is None or length > WHOLE_ANSWER_BYTES):
                within.reschedule(None)
                return Reply(resp.status, end_to_end(resp.headers), b"", resp)
            try:
                payload = await resp.read()
            finally:
                resp.release()
        return Reply(resp.status, end_to_end(resp.headers), payload)
    except aiohttp.ConnectionTimeoutError as exc:
        # Could not even connect: the node is unreachable, which is worth another node.
        raise UpstreamUnavailable(f"{method} {url}: {exc!r}") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{method} {url}: no answer within {timeout_s:.3g} s") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise UpstreamUnavailable(f"{method} {url}: {exc!r}") from exc


async def rest_of(reply: Reply) -> AsyncGenerator[bytes, None]:
    """The pending rest of `reply`'s answer, chunk by chunk as it comes; UpstreamError when the
    upstream breaks off or stalls. The upstream connection is released (or closed) after."""
    resp = reply.pending
    if resp is None:
        return
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        resp.close()
        raise UpstreamTimeout(f"{resp.url}: the answer stalled") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        resp.close()
        raise UpstreamUnavailable(f"{resp.url}: the answer broke off: {exc!r}") from exc
    finally:
        resp.release()


async def aclose_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # aiohttp closes transports on the next loop iterations; give them one so no warning fires.
    await asyncio.sleep(0)
