"""A steady closed-loop load on a gateway, for the fault tests: clients sending one model's
requests back to back until stopped, every answer recorded with the node that served it."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.e2e.cluster import simple_body

Answer = tuple[int, str]  # (HTTP status, 0 for none; the serving node, or what went wrong)


class Load:
    def __init__(
        self, url: str, model: str = "simple", body: dict[str, Any] | None = None, clients: int = 4
    ) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.body = simple_body(2) if body is None else body
        self.stopping = threading.Event()
        self.answers: list[Answer] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopping.is_set():
                try:
                    answer = client.post(self.url, json=self.body)
                    self.answers.append((answer.status_code, answer.headers.get("X-Tritonfleet-Node", "")))
                except httpx.HTTPError as exc:
                    self.answers.append((0, repr(exc)))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def since(self, mark: int) -> list[Answer]:
        return self.answers[mark:]

    def failures(self) -> list[Answer]:
        return [answer for answer in self.answers if answer[0] != 200]
