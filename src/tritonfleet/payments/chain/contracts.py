"""The Vyper contracts, compiled once: ABI and bytecode, cached by a hash of what went into them.

`python -m tritonfleet.payments.chain.contracts` compiles into the cache (run by `make install`), so
that services and tests start without the compiler's second or two.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tritonfleet.payments.chain import paths
from tritonfleet.payments.errors import PaymentsError

CREDIT = "FleetCredit"
VAULT = "PaymentVault"


class CompileError(PaymentsError):
    """A contract did not compile, or its sources or building blocks are missing."""


@dataclass(frozen=True)
class CompiledContract:
    name: str
    abi: list[dict[str, Any]]
    # Creation bytecode, 0x-prefixed.
    bytecode: str


@dataclass(frozen=True)
class Contracts:
    credit: CompiledContract
    vault: CompiledContract


@functools.cache
def load_contracts() -> Contracts:
    """The project's contracts, from the cache when their sources and compiler are unchanged."""
    return compile_contracts(paths.contracts_dir(), paths.build_dir() / "contracts")


def compile_contracts(source_dir: Path, cache_dir: Path) -> Contracts:
    snekmate = snekmate_root()
    key = cache_key(source_dir)
    cached = cache_dir / f"{key}.json"
    if cached.is_file():
        return _from_json(json.loads(cached.read_text()))
    built = {name: asdict(compile_source(source_dir, name, snekmate)) for name in (CREDIT, VAULT)}
    _write_atomically(cached, json.dumps(built))
    for stale in cache_dir.glob("*.json"):
        if stale != cached:
            stale.unlink(missing_ok=True)  # artifacts of sources that have changed since
    return _from_json(built)


def snekmate_root() -> Path:
    """The folder that holds the installed `snekmate` package, as a compiler search path."""
    spec = importlib.util.find_spec("snekmate")
    if spec is None or not spec.submodule_search_locations:
        raise CompileError("snekmate is not installed (pip install snekmate)")
    # A namespace package (no __init__.py): its one location is the package folder.
    return Path(next(iter(spec.submodule_search_locations))).parent


def cache_key(source_dir: Path) -> str:
    """Changes with any contract source, the compiler version or the snekmate version."""
    digest = hashlib.sha256()
    digest.update(f"vyper {importlib.metadata.version('vyper')}\n".encode())
    digest.update(f"snekmate {importlib.metadata.version('snekmate')}\n".encode())
    sources = sorted(source_dir.glob("*.vy*"))
    if not sources:
        raise CompileError(f"no contract sources in {source_dir}")
    for source in sources:
        digest.update(f"{source.name}\n".encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


def compile_source(source_dir: Path, name: str, snekmate: Path | None = None) -> CompiledContract:
    """Compile `<source_dir>/<name>.vy`, uncached, with snekmate on the search path."""
    # Imported here: services read the cache and need not load the compiler.
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

    bundle = FilesystemInputBundle([source_dir, snekmate or snekmate_root()])
    try:
        file_input = bundle.load_file(Path(f"{name}.vy"))
        out = compile_from_file_input(file_input, input_bundle=bundle, output_formats=["abi", "bytecode"])
    except (VyperException, FileNotFoundError) as exc:
        raise CompileError(f"{name}.vy: {exc}") from exc
    return CompiledContract(name, out["abi"], out["bytecode"])


def _from_json(built: dict[str, Any]) -> Contracts:
    def one(name: str) -> CompiledContract:
        return CompiledContract(name, built[name]["abi"], built[name]["bytecode"])

    return Contracts(credit=one(CREDIT), vault=one(VAULT))


def _write_atomically(path: Path, text: str) -> None:
    # Two processes compiling at once (parallel tests) each rename a complete file into place.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main() -> int:
    try:
        contracts = load_contracts()
    except CompileError as exc:
        print(f"contracts: {exc}", file=sys.stderr)
        return 1
    for compiled in (contracts.credit, contracts.vault):
        print(f"{compiled.name}: {len(compiled.bytecode) // 2 - 1} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
