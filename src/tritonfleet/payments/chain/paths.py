"""Where the project's non-Python parts live: the Vyper sources, the npm tools, the build cache."""

from __future__ import annotations

from pathlib import Path

_MARKER = "pyproject.toml"


def project_root() -> Path:
    """The checkout this package runs from (an editable install), else the current directory.

    The contracts and `node_modules/` sit beside `pyproject.toml`, not inside the package.
    """
    for parent in Path(__file__).resolve().parents:
        if (parent / _MARKER).is_file() and (parent / "contracts").is_dir():
            return parent
    return Path.cwd()


def contracts_dir() -> Path:
    return project_root() / "contracts"


def build_dir() -> Path:
    # Under the state directory, which git ignores and `make clean` removes.
    return project_root() / ".tritonfleet" / "build"


def node_bin(name: str) -> Path:
    return project_root() / "node_modules" / ".bin" / name
