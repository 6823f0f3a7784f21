"""The gateway's access log: a JSON line a request (all of them, a random sample, or none).

Sampler            whether one request is logged, asked before its line is built, so that
                   `off` costs a comparison and nothing else
write(line)        the line, to the `tritonfleet.access` logger (not the root's handler)
setup(gw)          that logger's handler: stderr with the other logs, or
                   gateway.access_log_file rolled over past its size (RotatingFileHandler)
envoy_access_log   the same lines from Envoy's fast path, which Python never sees: the
                   HttpConnectionManager's `access_log`, to the same stderr or file
rotate_if_needed   rolls the file over once Envoy's lines have filled it too: the gateway
                   owns the rotation, Envoy only reopens the file when told
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from typing import Any

from tritonfleet.config import AccessLog, ConfigError, GatewayConfig
from tritonfleet.logs import JsonFormatter

LOGGER = "tritonfleet.access"
# Envoy's runtime key of the sample, should an operator want to change it on a live Envoy.
SAMPLE_RUNTIME_KEY = "tritonfleet.access_log_sample"

_logger = logging.getLogger(LOGGER)
_file: _AccessFile | None = None

_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_STDERR_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
_CEL_FILTER = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
# What Envoy sends to the Python gateway, the Python gateway logs (with the route's name and
# the model it parsed): Envoy logs the rest, its fast path, once. The names are resources.py's
# PYTHON_HTTP and PYTHON_GRPC (not imported: resources.py will import this module).
_NOT_TO_PYTHON = "!(xds.cluster_name in ['python_http', 'python_grpc'])"


class Sampler:
    """Whether a request gets a line: `all`, `off`, or `sampled` with probability
    gateway.access_log_sample (`draw` is random.random but in tests)."""

    def __init__(self, gw: GatewayConfig, draw: Callable[[], float] = random.random) -> None:
        self.mode = gw.access_log
        self.sample = gw.access_log_sample
        self.draw = draw

    def wanted(self) -> bool:
        if self.mode is AccessLog.ALL:
            return True
        if self.mode is AccessLog.OFF:
            return False
        return self.draw() < self.sample


def write(line: dict[str, Any]) -> None:
    _logger.info("request", extra=line)


def setup(gw: GatewayConfig, service: str = "gateway") -> None:
    """The access logger's handler for `gw`, in place of any earlier one. Its level is its own:
    gateway.access_log, not the gateway's --log-level, says which requests are logged."""
    global _file
    handler: logging.Handler
    if gw.access_log is AccessLog.OFF:
        handler, _file = logging.NullHandler(), None
    elif gw.access_log_file is None:
        handler, _file = logging.StreamHandler(sys.stderr), None
    else:
        try:
            gw.access_log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = _file = _AccessFile(gw.access_log_file, gw.access_log_max_bytes, gw.access_log_backups)
        except OSError as exc:
            raise ConfigError(f"gateway.access_log_file: cannot open {gw.access_log_file}: {exc}") from exc
    handler.setFormatter(JsonFormatter(service))
    for old in _logger.handlers[:]:
        _logger.removeHandler(old)
        old.close()
    _logger.addHandler(handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False


def rotate_if_needed() -> bool:
    """Roll the access log file over if it has reached its size, Envoy's lines included. True
    when it was rolled over since the last call, here or by a Python line that found it full:
    Envoy must then reopen it (POST /reopen_logs on its admin), or go on writing to `.1`.
    False without a file. Blocking file I/O: call it from a thread."""
    handler = _file
    if handler is None:
        return False
    handler.acquire()  # as its emit() does: no line is written meanwhile
    try:
        try:
            full = os.stat(handler.baseFilename).st_size >= handler.maxBytes
        except FileNotFoundError:
            full = True  # removed under us: a new one, for Python and Envoy both
        if full and handler.regular:
            handler.doRollover()
        rolled, handler.rolled = handler.rolled, False
    finally:
        handler.release()
    return rolled


class _AccessFile(RotatingFileHandler):
    def __init__(self, path: os.PathLike[str], max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.rolled = False
        # Not a regular file (/dev/stdout, a pipe): written, never rolled over.
        self.regular = os.path.isfile(self.baseFilename)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        # The file's size alone, Envoy's lines included (it appends to the same file): unlike
        # RotatingFileHandler's, without formatting the line twice and two stat() a line.
        if not self.regular:
            return False
        if self.stream is None:
            self.stream = self._open()
        return self.stream.seek(0, os.SEEK_END) >= self.maxBytes

    def doRollover(self) -> None:
        super().doRollover()
        self.rolled = True


def envoy_access_log(gw: GatewayConfig, grpc: bool = False) -> list[dict[str, Any]]:
    """The `access_log` of an Envoy HttpConnectionManager, HTTP's or (`grpc`) gRPC's: a line for
    each request Envoy serves itself, its fast path (a model's infer), with the fields of the
    Python gateway's lines; to gateway.access_log_file or Envoy's stderr, sampled as `gw` says;
    [] when off. `model` and `version` are the model cluster's metadata (tritonfleet: model,
    version), null where it has none, as `node` is its endpoint's (tritonfleet: node_id)."""
    if gw.access_log is AccessLog.OFF:
        return []
    log_format = {"json_format": _envoy_line(grpc)}
    if gw.access_log_file is None:
        # Envoy's own fd 2, which it need not open: /dev/stderr can't be opened when stderr is a
        # socket (systemd's journal), and there is nothing to rotate.
        typed_config: dict[str, Any] = {"@type": _STDERR_LOG, "log_format": log_format}
        name = "envoy.access_loggers.stderr"
    else:
        # Absolute, as Python's handler holds it: Envoy may run elsewhere than the gateway's cwd.
        path = os.path.abspath(gw.access_log_file)
        typed_config = {"@type": _FILE_LOG, "path": path, "log_format": log_format}
        name = "envoy.access_loggers.file"
    fast_path: dict[str, Any] = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {"@type": _CEL_FILTER, "expression": _NOT_TO_PYTHON},
        }
    }
    log_filter = fast_path
    if gw.access_log is AccessLog.SAMPLED:
        sampled: dict[str, Any] = {
            "runtime_filter": {
                "runtime_key": SAMPLE_RUNTIME_KEY,
                "percent_sampled": {
                    "numerator": round(gw.access_log_sample * 10_000),
                    "denominator": "TEN_THOUSAND",
                },
                # Each request draws afresh, not by its request id (the default): ids a client
                # chose need not be random.
                "use_independent_randomness": True,
            }
        }
        log_filter = {"and_filter": {"filters": [fast_path, sampled]}}
    return [{"name": name, "filter": log_filter, "typed_config": typed_config}]


def _envoy_line(grpc: bool) -> dict[str, Any]:
    """The Python line's fields (logs.JsonFormatter's, then routes.py's), from Envoy's side."""
    return {
        "ts": "%START_TIME(%s.%3f)%",
        "level": "info",
        "service": "gateway",
        "logger": "envoy.access",
        "msg": "request",
        "request_id": "%REQ(X-REQUEST-ID)%",
        # The fast path serves inference only: the Python gateway's names of it.
        "route": "grpc:ModelInfer" if grpc else "infer",
        "model": "%CLUSTER_METADATA(tritonfleet:model)%",
        "version": "%CLUSTER_METADATA(tritonfleet:version)%",
        # As the Python gateway's: HTTP's status, or the gRPC code's name (UNAVAILABLE).
        "status": "%GRPC_STATUS(SNAKE_STRING)%" if grpc else "%RESPONSE_CODE%",
        "node": "%UPSTREAM_METADATA(tritonfleet:node_id)%",
        "duration_ms": "%DURATION%",
    }
