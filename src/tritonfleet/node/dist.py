"""Where `tritonserver` and its Python backend are, and the environment they need.

Two kinds of installation. NVIDIA's container puts `tritonserver` on PATH with its backends in
their default place: it runs as it is. The `nvidia-pytriton` wheel (CPU machines) ships the
binary, the Python backend and one backend stub per Python version: a backend directory is
assembled at run time with the stub of the running interpreter, and the environment is set so
that the stub finds libpython and, since it runs Python with the environment ignored and takes
`sys.prefix` from the first `python3` on PATH, this virtual environment's numpy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.node.errors import TritonNotFound

# `triton_binary` setting that forces the wheel's binary even where one is on PATH.
WHEEL = "wheel"
STUB = "triton_python_backend_stub"
BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


@dataclass(frozen=True, slots=True)
class TritonDist:
    binary: Path
    # `<site-packages>/pytriton/tritonserver` for the wheel; None where Triton's defaults hold.
    wheel_root: Path | None = None

    def prepare(self, run_dir: Path) -> list[str]:
        """Lay out what this installation needs under run_dir; the extra `tritonserver` flags."""
        if self.wheel_root is None:
            return []
        python_dir = run_dir / "backends" / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for name in BACKEND_FILES:
            shutil.copy2(self.wheel_root / "backends" / "python" / name, python_dir / name)
        shutil.copy2(stub_path(self.wheel_root), python_dir / STUB)
        return [
            f"--backend-directory={run_dir / 'backends'}",
            f"--cache-directory={self.wheel_root / 'caches'}",
        ]

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.wheel_root is None:
            return env
        libs = [
            str(sysconfig.get_config_var("LIBDIR")),
            str(self.wheel_root.parents[1] / "nvidia_pytriton.libs"),
        ]
        env["LD_LIBRARY_PATH"] = _prepend(libs, base.get("LD_LIBRARY_PATH", ""))
        # Not resolved: the venv's bin, whose `python3` makes the stub use the venv's packages.
        env["PATH"] = _prepend([str(Path(sys.executable).parent)], base.get("PATH", os.defpath))
        return env


def locate(setting: str = "", which: Callable[[str], str | None] = shutil.which) -> TritonDist:
    """`""`: `tritonserver` on PATH, else the wheel's; `"wheel"`: the wheel's; else a path."""
    if setting and setting != WHEEL:
        binary = Path(setting)
        if not binary.is_file():
            raise TritonNotFound(f"node.triton_binary: no file {binary}")
        return TritonDist(binary)
    on_path = which("tritonserver") if not setting else None
    if on_path is not None:
        return TritonDist(Path(on_path))
    return wheel_dist()


def wheel_dist() -> TritonDist:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonNotFound("no tritonserver on PATH and the nvidia-pytriton wheel is not installed")
    root = Path(spec.origin).parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise TritonNotFound(f"the nvidia-pytriton wheel has no {binary}")
    stub_path(root)
    return TritonDist(binary, root)


def stub_path(wheel_root: Path) -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = wheel_root / "python_backend_stubs" / version / STUB
    if not path.is_file():
        raise TritonNotFound(f"the nvidia-pytriton wheel has no Python backend stub for Python {version}")
    return path


def _prepend(first: list[str], rest: str) -> str:
    return os.pathsep.join([*first, *([rest] if rest else [])])
