"""A JSON-RPC proxy in front of a node that answers as slowly, as wrongly or as never as a test says.

    def test_reads_through_a_slow_node(slow_rpc: SlowRpc) -> None:
        slow_rpc.delay(0.2, "eth_call")       # or slow_rpc.delay(0.2) for every method
        chain = Chain(slow_rpc.url, ...)
        ...
        assert slow_rpc.count("eth_call") == 10

`slow_rpc` stands in front of the module's `anvil`; `slow_rpc_proxy(url)` in front of any node.
Behaviours change at any time, also while requests are in flight: `heal()` releases hung ones.
web3 tries a timed-out read 5 times, so one hung call costs a client 5 request timeouts and
about 1.9 s of back-off between them.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tritonfleet.payments.chain.anvil import Anvil

# The key of the behaviour of every method that has none of its own.
ANY = "*"


@dataclass(frozen=True)
class Behaviour:
    delay_s: float = 0.0
    # A JSON-RPC error object to answer instead of the node's answer.
    error: dict[str, Any] | None = None
    # Answer nothing until the behaviour changes or the proxy closes.
    hang: bool = False


_NORMAL = Behaviour()


class SlowRpc:
    """The proxy's controls and what it has seen; `url` is where clients connect."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        # Every JSON-RPC request received (batches flattened), in order, answered or not.
        self.requests: list[dict[str, Any]] = []
        self._behaviours: dict[str, Behaviour] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # Not joined on close: a client's kept-alive connection holds its thread in a read.
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-rpc", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- what the test says ----------------------------------------------------------------

    def delay(self, seconds: float, method: str = ANY) -> None:
        """Answer `method` (default: every method) `seconds` late."""
        self._set(method, Behaviour(delay_s=seconds))

    def fail(self, method: str = ANY, message: str = "slow_rpc: refused", code: int = -32000) -> None:
        """Answer `method` with a JSON-RPC error, without asking the node."""
        self._set(method, Behaviour(error={"code": code, "message": message}))

    def hang(self, method: str = ANY) -> None:
        """Never answer `method`, until `heal` or close: the client's own timeout must act."""
        self._set(method, Behaviour(hang=True))

    def heal(self, method: str | None = None) -> None:
        """Back to forwarding at once: `method`'s behaviour, or when None every behaviour."""
        with self._changed:
            if method is None:
                self._behaviours.clear()
            else:
                self._behaviours.pop(method, None)
            self._changed.notify_all()

    # --- what the test reads ---------------------------------------------------------------

    def count(self, method: str) -> int:
        with self._changed:
            return sum(1 for request in self.requests if request.get("method") == method)

    def reset_counts(self) -> None:
        with self._changed:
            self.requests.clear()

    # --- the server ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _set(self, method: str, behaviour: Behaviour) -> None:
        with self._changed:
            self._behaviours[method] = behaviour
            self._changed.notify_all()

    def _behaviour(self, method: str) -> Behaviour:
        return self._behaviours.get(method, self._behaviours.get(ANY, _NORMAL))

    def answer(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to one JSON-RPC request, or None to answer nothing (closed while hung)."""
        method = request.get("method", "")
        with self._changed:
            self.requests.append(request)
            # A hang lasts while the method's behaviour says so: wait for any change.
            while self._behaviour(method).hang and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            behaviour = self._behaviour(method)
            # Sleeps on the condition, so that close() cuts a long delay short.
            self._changed.wait_for(lambda: self._closed, timeout=behaviour.delay_s)
            if self._closed:
                return None
        if behaviour.error is not None:
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": behaviour.error}
        return self._forward(request)

    def _forward(self, request: dict[str, Any]) -> dict[str, Any]:
        upstream = urllib.request.Request(
            self.upstream_url, data=json.dumps(request).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(upstream, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer


def _handler_for(proxy: SlowRpc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as web3's session expects of a node.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            # A batch costs each of its requests' delays, one after another, as a slow node would.
            answers = [proxy.answer(request) for request in (body if isinstance(body, list) else [body])]
            if any(answer is None for answer in answers):
                self.close_connection = True
                return
            payload = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests' output is no place for an access log

    return Handler


@contextmanager
def slow_rpc_proxy(upstream_url: str) -> Iterator[SlowRpc]:
    """A proxy in front of `upstream_url`, forwarding as is until told otherwise."""
    proxy = SlowRpc(upstream_url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def slow_rpc(anvil: Anvil) -> Iterator[SlowRpc]:
    """A proxy in front of the module's anvil, fresh for each test."""
    with slow_rpc_proxy(anvil.rpc_url) as proxy:
        yield proxy
