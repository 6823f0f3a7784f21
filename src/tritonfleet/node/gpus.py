"""The node's GPUs, as `nvidia-smi` reports them: the one wrapper over that command.

Read once, when the manager starts: a machine's GPUs do not change while it runs, and a
heartbeat a second must not fork a process. On a machine without `nvidia-smi` (a CPU machine)
the list is empty; an `nvidia-smi` that fails or hangs (a GPU fallen off the bus) leaves it
empty too, logged, never raised: a node serves without the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import Mapping

from tritonfleet.protocol import GpuDevice

log = logging.getLogger(__name__)

QUERY = "index,name,memory.total,uuid"
TIMEOUT_S = 10.0
MIB = 1 << 20


def visible_devices(gpus: str, env: Mapping[str, str]) -> str:
    """The GPUs Triton gets: node.gpus, else the manager's own CUDA_VISIBLE_DEVICES; "" for all."""
    return gpus or env.get("CUDA_VISIBLE_DEVICES", "").strip()


async def read_gpus(
    devices: str = "", binary: str | None = None, timeout_s: float = TIMEOUT_S
) -> list[GpuDevice]:
    """The GPUs `devices` names (as CUDA_VISIBLE_DEVICES does; "" for every one); [] for none."""
    path = binary or shutil.which("nvidia-smi")
    if path is None:
        return []
    argv = [path, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"]
    if devices:
        argv.append(f"--id={devices}")
    out = await _output(argv, timeout_s)
    return parse(out) if out is not None else []


async def _output(argv: list[str], timeout_s: float) -> str | None:
    """What the command prints; None (logged) when it cannot run, fails or outlasts timeout_s."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        log.warning("cannot run nvidia-smi", extra={"binary": argv[0], "error": str(exc)})
        return None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        log.warning("nvidia-smi did not answer in time", extra={"binary": argv[0], "timeout_s": timeout_s})
        return None
    finally:
        # Timed out, or the manager cancelled while it ran: it leaves no process behind.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        error = err.decode(errors="replace").strip()[-300:]
        log.warning("nvidia-smi failed", extra={"status": proc.returncode, "error": error})
        return None
    return out.decode(errors="replace")


def parse(text: str) -> list[GpuDevice]:
    """`index, name, memory.total (MiB), uuid` lines; a line that does not read so is skipped."""
    found = []
    for line in filter(str.strip, text.splitlines()):
        try:
            found.append(_device(line))
        except ValueError:
            log.warning("unreadable nvidia-smi line", extra={"line": line[:300]})
    return found


def _device(line: str) -> GpuDevice:
    index, rest = line.split(",", 1)
    # A model name may hold a comma; the memory and the uuid never do.
    name, memory_mib, uuid = rest.rsplit(",", 2)
    return GpuDevice(
        index=int(index), name=name.strip(), memory_bytes=int(memory_mib) * MIB, uuid=uuid.strip()
    )
