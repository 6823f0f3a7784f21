"""One upstream HTTP exchange, shared by the gateway and the node manager's forwarding mode.

Bodies travel byte for byte in both directions: the client session must be created with
`auto_decompress=False` (see `new_session`), and only hop-by-hop headers are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes


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
) -> Reply:
    """Send one request and read the whole answer, mapping transport failures to UpstreamError."""
    try:
        async with session.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=session.timeout.sock_connect),
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            return Reply(resp.status, end_to_end(resp.headers), payload)
    except aiohttp.ConnectionTimeoutError as exc:
        # Could not even connect: the node is unreachable, which is worth another node.
        raise UpstreamUnavailable(f"{method} {url}: {exc!r}") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{method} {url}: no answer within {timeout_s:.3g} s") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise UpstreamUnavailable(f"{method} {url}: {exc!r}") from exc


async def aclose_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # aiohttp closes transports on the next loop iterations; give them one so no warning fires.
    await asyncio.sleep(0)
