"""The gateway's access log: which requests get a line, where the lines go, the file's rotation
(Envoy's lines in it included), and Envoy's own access log configuration."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from tests.gateway.fakes import gateway_core
from tritonfleet.config import AccessLog, GatewayConfig
from tritonfleet.gateway import access_log
from tritonfleet.gateway.envoy.binary import locate
from tritonfleet.gateway.envoy.resources import PYTHON_GRPC, PYTHON_HTTP
from tritonfleet.gateway.errors import EnvoyNotFound
from tritonfleet.gateway.grpc.metadata import CallRecord
from tritonfleet.gateway.grpc.routes import GrpcRoutes
from tritonfleet.gateway.http.routes import build_app
from tritonfleet.proxy import aclose_session, new_session
from tritonfleet.up.cluster import bound_log

# The fields of every request line, Python's and Envoy's alike.
LINE_FIELDS = {"request_id", "route", "model", "version", "status", "node", "duration_ms"}
FORMATTER_FIELDS = {"ts", "level", "service", "logger", "msg"}
ENVOY_TYPES = "type.googleapis.com/envoy.extensions"


@pytest.fixture(autouse=True)
def access_logger() -> Iterator[logging.Logger]:
    """The access logger as the test found it, whatever the test's setup() did to it."""
    logger = logging.getLogger(access_log.LOGGER)
    saved = (logger.handlers[:], logger.propagate, logger.level, access_log._file)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.propagate, logger.level, access_log._file = saved


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(access_log, "write", lines.append)
    return lines


def never() -> float:
    raise AssertionError("no random draw for this mode")


# Which requests


def test_off_and_all_decide_without_a_random_draw() -> None:
    assert not access_log.Sampler(GatewayConfig(access_log=AccessLog.OFF), draw=never).wanted()
    assert access_log.Sampler(GatewayConfig(access_log=AccessLog.ALL), draw=never).wanted()


def test_sampled_logs_the_draws_below_the_fraction() -> None:
    draws = iter([0.0, 0.249, 0.25, 0.9, 0.1])
    sampler = access_log.Sampler(
        GatewayConfig(access_log="sampled", access_log_sample=0.25), draw=draws.__next__
    )
    assert [sampler.wanted() for _ in range(5)] == [True, True, False, False, True]


def test_sampled_logs_about_the_fraction_of_many_requests() -> None:
    seeded = random.Random(20240601)
    sampler = access_log.Sampler(
        GatewayConfig(access_log="sampled", access_log_sample=0.1), draw=seeded.random
    )
    logged = sum(sampler.wanted() for _ in range(20_000))
    assert 1800 < logged < 2200  # one seed, one count: no flaky statistics


@pytest.mark.parametrize("sample", [0.0, -0.1, 1.5])
def test_a_sample_outside_0_to_1_is_refused(sample: float) -> None:
    with pytest.raises(ValidationError, match="access_log_sample"):
        GatewayConfig(access_log_sample=sample)


def test_a_file_that_would_never_roll_over_is_refused() -> None:
    GatewayConfig(access_log_sample=1.0)
    with pytest.raises(ValidationError, match="access_log_backups"):
        GatewayConfig(access_log_backups=0)
    with pytest.raises(ValidationError, match="access_log_max_bytes"):
        GatewayConfig(access_log_max_bytes=0)


# The routes' lines


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    data_session = new_session(connect_timeout_s=0.5)
    yield data_session
    await aclose_session(data_session)


async def http_requests(session: aiohttp.ClientSession, n: int, **config: Any) -> None:
    """n inferences of a model no node serves (404), each logged or not as `config` says."""
    client = TestClient(TestServer(build_app(gateway_core([], session, **config)), host="127.0.0.1"))
    await client.start_server()
    try:
        for i in range(n):
            response = await client.post(
                "/v2/models/simple/infer", data=b"{}", headers={"X-Request-ID": f"r-{i}"}
            )
            assert response.status == 404
    finally:
        await client.close()


async def test_http_all_logs_every_request_with_its_fields(
    session: aiohttp.ClientSession, written: list[dict[str, Any]]
) -> None:
    await http_requests(session, 3, access_log="all")
    assert [line["request_id"] for line in written] == ["r-0", "r-1", "r-2"]
    assert set(written[0]) == LINE_FIELDS
    assert (written[0]["route"], written[0]["model"], written[0]["status"]) == ("infer", "simple", 404)


async def test_http_off_logs_nothing(session: aiohttp.ClientSession, written: list[dict[str, Any]]) -> None:
    await http_requests(session, 3, access_log="off")
    assert written == []


async def test_grpc_calls_are_logged_as_the_sampler_says(
    session: aiohttp.ClientSession, written: list[dict[str, Any]]
) -> None:
    def observed(**config: Any) -> None:
        routes = GrpcRoutes(gateway_core([], session, **config), None, None)  # type: ignore[arg-type]
        record = CallRecord("ModelInfer", "g-1", grpc.StatusCode.UNAVAILABLE, "simple", "", None)
        routes._observe(record, time.monotonic())

    observed(access_log="off")
    observed(access_log="all")
    await asyncio.sleep(0)  # the loop's next turn, when the routes' call_soon writes run
    assert written == [
        {
            "request_id": "g-1",
            "route": "grpc:ModelInfer",
            "model": "simple",
            "version": None,
            "status": "UNAVAILABLE",
            "node": None,
            "duration_ms": written[0]["duration_ms"],
        }
    ]


# Where the lines go


def test_without_a_file_the_lines_go_to_stderr_in_json_not_through_the_root(
    access_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    access_log.setup(GatewayConfig())
    [handler] = access_logger.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    assert not access_logger.propagate
    access_log.write({"request_id": "r-1", "status": 200})
    entry = json.loads(capsys.readouterr().err)
    assert (entry["msg"], entry["logger"], entry["service"], entry["request_id"]) == (
        "request",
        "tritonfleet.access",
        "gateway",
        "r-1",
    )


def test_off_opens_no_file(tmp_path: Path, access_logger: logging.Logger) -> None:
    access_log.setup(GatewayConfig(access_log="off", access_log_file=tmp_path / "access.log"))
    access_log.write({"request_id": "r-1"})
    assert not (tmp_path / "access.log").exists()
    assert not access_log.rotate_if_needed()


def test_the_file_rolls_over_at_its_size_keeping_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "access.log"
    access_log.setup(GatewayConfig(access_log_file=path, access_log_max_bytes=1000, access_log_backups=2))
    for i in range(100):
        access_log.write({"request_id": f"r-{i:03}", "status": 200})
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["access.log", "access.log.1", "access.log.2"]
    line_bytes = len(path.read_text().splitlines()[0]) + 1
    for name in files:
        assert (path.parent / name).stat().st_size <= 1000 + line_bytes
    # The newest lines are in the file itself, the next older in .1.
    assert json.loads(path.read_text().splitlines()[-1])["request_id"] == "r-099"
    older = json.loads((path.parent / "access.log.1").read_text().splitlines()[-1])["request_id"]
    assert older < json.loads(path.read_text().splitlines()[0])["request_id"]


def test_rotate_if_needed_rolls_over_a_file_that_another_writer_filled(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log.setup(GatewayConfig(access_log_file=path, access_log_max_bytes=1000))
    access_log.write({"request_id": "python-1"})
    assert not access_log.rotate_if_needed()
    # Envoy, appending to the same file as it does.
    with path.open("a") as envoy:
        envoy.write('{"logger":"envoy.access","msg":"request"}\n' * 30)
    assert access_log.rotate_if_needed()
    assert path.stat().st_size == 0
    assert "python-1" in (tmp_path / "access.log.1").read_text()
    assert not access_log.rotate_if_needed()
    # The next Python line goes to the new file.
    access_log.write({"request_id": "python-2"})
    assert "python-2" in path.read_text()


def test_rotate_if_needed_tells_of_a_roll_over_that_a_python_line_did(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log.setup(GatewayConfig(access_log_file=path, access_log_max_bytes=1000))
    with path.open("a") as envoy:
        envoy.write("x" * 1000 + "\n")
    access_log.write({"request_id": "python-1"})
    assert (tmp_path / "access.log.1").exists()
    # Rolled over by the line: Envoy, still writing to .1, must reopen all the same.
    assert access_log.rotate_if_needed()
    assert not access_log.rotate_if_needed()


def test_rotate_if_needed_without_a_file_does_nothing() -> None:
    access_log.setup(GatewayConfig())
    assert not access_log.rotate_if_needed()


# Envoy's lines


def test_envoy_logs_nothing_when_off() -> None:
    assert access_log.envoy_access_log(GatewayConfig(access_log="off")) == []


def test_envoy_logs_its_fast_path_to_stderr_with_the_python_lines_fields() -> None:
    [logger] = access_log.envoy_access_log(GatewayConfig())
    assert logger["name"] == "envoy.access_loggers.stderr"
    config = logger["typed_config"]
    assert config["@type"].endswith("access_loggers.stream.v3.StderrAccessLog")
    fields = config["log_format"]["json_format"]
    assert set(fields) == LINE_FIELDS | FORMATTER_FIELDS
    assert (fields["logger"], fields["msg"], fields["route"], fields["status"]) == (
        "envoy.access",
        "request",
        "infer",
        "%RESPONSE_CODE%",
    )
    # Not what it sends to the Python gateway, which logs that itself.
    expression = logger["filter"]["extension_filter"]["typed_config"]["expression"]
    assert f"'{PYTHON_HTTP}'" in expression and f"'{PYTHON_GRPC}'" in expression


def test_envoy_logs_grpc_with_the_python_gateways_route_and_code_names() -> None:
    [logger] = access_log.envoy_access_log(GatewayConfig(), grpc=True)
    fields = logger["typed_config"]["log_format"]["json_format"]
    assert (fields["route"], fields["status"]) == ("grpc:ModelInfer", "%GRPC_STATUS(SNAKE_STRING)%")


def test_envoy_writes_to_the_access_log_file_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [logger] = access_log.envoy_access_log(GatewayConfig(access_log_file=Path("logs/access.log")))
    assert logger["name"] == "envoy.access_loggers.file"
    assert logger["typed_config"]["@type"].endswith("access_loggers.file.v3.FileAccessLog")
    assert logger["typed_config"]["path"] == str(tmp_path / "logs" / "access.log")


def test_envoy_samples_with_a_runtime_filter_besides_the_fast_path_one() -> None:
    [logger] = access_log.envoy_access_log(GatewayConfig(access_log="sampled", access_log_sample=0.0125))
    fast_path, sampled = logger["filter"]["and_filter"]["filters"]
    assert "extension_filter" in fast_path
    assert sampled == {
        "runtime_filter": {
            "runtime_key": "tritonfleet.access_log_sample",
            "percent_sampled": {"numerator": 125, "denominator": "TEN_THOUSAND"},
            "use_independent_randomness": True,
        }
    }


def test_envoy_accepts_its_access_logs(tmp_path: Path) -> None:
    """Field names, types and format operators as Envoy's v3 API has them: Envoy validates a
    bootstrap with each variant."""
    try:
        envoy = locate()
    except EnvoyNotFound:
        pytest.skip("no Envoy")
    variants = [
        access_log.envoy_access_log(GatewayConfig(access_log=mode, access_log_file=file), grpc=grpc)
        for mode in ("all", "sampled")
        for file in (None, tmp_path / "access.log")
        for grpc in (False, True)
    ]
    listeners = [_listener(i, logs) for i, logs in enumerate(variants)]
    bootstrap = {
        "static_resources": {
            "listeners": listeners,
            "clusters": [{"name": "python_http", "type": "STATIC", "connect_timeout": "1s"}],
        }
    }
    (tmp_path / "bootstrap.json").write_text(json.dumps(bootstrap))
    checked = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(tmp_path / "bootstrap.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _listener(i: int, logs: list[dict[str, Any]]) -> dict[str, Any]:
    manager = {
        "@type": f"{ENVOY_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"l{i}",
        "access_log": logs,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "python_http"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": f"l{i}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


# `make up`'s service logs (tritonfleet.up.cluster)


def test_a_service_log_past_its_bound_is_kept_in_dot_1_and_emptied_under_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    with path.open("ab") as service:  # as ServiceProcess opens its output
        service.write(b"old line\n" * 20)
        service.flush()
        assert not bound_log(path, max_bytes=1000)
        service.write(b"old line\n" * 200)
        service.flush()
        assert bound_log(path, max_bytes=1000)
        assert path.stat().st_size == 0
        service.write(b"new line\n")
        service.flush()
    assert path.read_bytes() == b"new line\n"  # at the start: no hole where the old lines were
    assert (tmp_path / "gateway.log.1").read_bytes() == b"old line\n" * 220
    assert not bound_log(tmp_path / "never-started.log")


def test_bound_log_empties_a_log_even_when_it_cannot_keep_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    path.write_bytes(b"x" * 2000)
    os.mkdir(tmp_path / "gateway.log.1")  # where the copy would go: it can't
    assert bound_log(path, max_bytes=1000)
    assert path.stat().st_size == 0
