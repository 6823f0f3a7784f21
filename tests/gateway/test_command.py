"""The gateway's start-up and close: everything it opens is closed, whatever fails."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from tests.conftest import marked_processes
from tests.scheduler.fakes import FakeHealthChecker, node, served
from tritonfleet.config import FleetConfig, load_config
from tritonfleet.gateway.command import create_app
from tritonfleet.gateway.errors import GrpcBindError
from tritonfleet.gateway.service import open_core
from tritonfleet.net import free_port
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.protocol import NodeList
from tritonfleet.scheduler.client import EmbeddedScheduler


def gateway_config(**sections: dict[str, Any]) -> FleetConfig:
    overrides: dict[str, dict[str, Any]] = {
        # Nobody answers there: the watch retries in the background, which is all these tests need.
        "cluster": {"health_urls": [f"http://127.0.0.1:{free_port()}"], "token": "test-cluster-token"},
        "gateway": {"port": free_port(), "grpc_port": free_port(), "shutdown_grace_s": 0.1},
        "payments": {"enabled": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, env={}, overrides=overrides)


def open_clients() -> list[object]:
    gc.collect()
    return [
        client
        for client in gc.get_objects()
        if (isinstance(client, aiohttp.ClientSession) and not client.closed)
        or (isinstance(client, httpx.AsyncClient) and not client.is_closed)
    ]


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


def port_taken(port: int) -> socket.socket:
    taken = socket.socket()
    taken.bind(("0.0.0.0", port))
    taken.listen()
    return taken


async def test_a_failure_while_starting_leaks_no_task_session_or_process(
    chain: DevChain, tmp_path: Path
) -> None:
    """With payments on, the gRPC port taken fails the start after the paid path (its refresh
    task and charge-writer process) and the watch have started: all of it is closed again."""
    chain.deployment.save(tmp_path / "deployment.json")
    config = gateway_config(
        payments={"enabled": True, "ledger_url": sqlite_url(tmp_path / "ledger.db")},
        chain={"rpc_url": chain.rpc_url, "deployment_file": str(tmp_path / "deployment.json")},
    )
    before = set(marked_processes())
    with port_taken(config.gateway.grpc_port), pytest.raises(GrpcBindError):
        await create_app(config)
    assert other_tasks() == set()
    assert open_clients() == []
    assert set(marked_processes()) <= before, "the charge writer is stopped"


async def test_one_failing_close_is_logged_and_the_others_still_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_close(self: EmbeddedScheduler) -> None:
        await self.watcher.aclose()
        raise RuntimeError("close failed")

    monkeypatch.setattr(EmbeddedScheduler, "aclose", broken_close)
    config = gateway_config()
    runner = web.AppRunner(await create_app(config))
    await runner.setup()
    with caplog.at_level(logging.WARNING, logger="tritonfleet.lifecycle"):
        await runner.cleanup()
    assert "closing the scheduler client failed" in caplog.text
    assert open_clients() == [], "the sessions opened before the scheduler still close"
    port_taken(config.gateway.grpc_port).close()  # the gRPC server, opened after it, is stopped
    assert other_tasks() == set()


async def test_the_embedded_scheduler_watches_with_the_configured_timeout_and_ttl() -> None:
    """health.watch_timeout_s is what the watch asks for, and a checker gone for health.ttl_s has
    its nodes dropped while another answers (the embedded scheduler once used fixed defaults:
    30 s and 3 s)."""
    asked: list[float] = []
    watched = asyncio.Event()

    class RecordingChecker(FakeHealthChecker):
        async def watch(self, since: int, timeout_s: float) -> NodeList:
            asked.append(timeout_s)
            watched.set()
            return await super().watch(since, timeout_s)

    checker = RecordingChecker([node("a", "simple")])
    other = FakeHealthChecker([node("b", "simple")])
    async with AsyncExitStack() as stack, served(other.app) as other_url:
        async with served(checker.app) as url:
            config = gateway_config(
                cluster={"health_urls": [url, other_url]}, health={"watch_timeout_s": 0.2, "ttl_s": 0.3}
            )
            core = await open_core(config, stack)
            assert await core.watcher.wait_for(lambda nodes: len(nodes) == 2, 5.0)
            await asyncio.wait_for(watched.wait(), 5.0)
        assert set(asked) == {0.2}
        assert await core.watcher.wait_for(lambda nodes: [n.node_id for n in nodes] == ["b"], 2.0), (
            "dropped after ttl_s, not 3 s"
        )
