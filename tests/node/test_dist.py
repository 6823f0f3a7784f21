"""Finding tritonserver and assembling what the wheel's binary needs."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from tritonfleet.node.dist import STUB, TritonDist, locate
from tritonfleet.node.errors import TritonNotFound


def test_a_tritonserver_on_path_wins_and_runs_as_it_is(tmp_path: Path) -> None:
    """NVIDIA's container: the binary on PATH, no extra flags, the environment untouched."""
    dist = locate("", which=lambda name: "/opt/tritonserver/bin/tritonserver")
    assert dist == TritonDist(Path("/opt/tritonserver/bin/tritonserver"))
    assert dist.prepare(tmp_path) == []
    assert dist.env({"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def test_wheel_forces_the_wheel_binary_even_with_one_on_path() -> None:
    """`triton_binary = "wheel"` ignores PATH."""
    dist = locate("wheel", which=lambda name: "/opt/tritonserver/bin/tritonserver")
    assert dist.wheel_root is not None and dist.binary.is_file()


def test_a_missing_binary_path_is_not_found() -> None:
    with pytest.raises(TritonNotFound, match="no file"):
        locate("/nowhere/tritonserver")


def test_the_wheel_gets_a_backend_dir_with_this_pythons_stub_and_an_env_to_find_it(tmp_path: Path) -> None:
    """The stub of this interpreter sits beside the Python backend; libpython and the venv's bin
    come first in the library path and PATH."""
    dist = locate("", which=lambda name: None)
    flags = dist.prepare(tmp_path)
    assert f"--backend-directory={tmp_path / 'backends'}" in flags
    assert (tmp_path / "backends" / "python" / STUB).is_file()
    assert (tmp_path / "backends" / "python" / "libtriton_python.so").is_file()
    env = dist.env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["PATH"].split(":") == [str(Path(sys.executable).parent), "/usr/bin"]
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == sysconfig.get_config_var("LIBDIR")
    assert libs[1].endswith("nvidia_pytriton.libs") and libs[2] == "/opt/lib"
