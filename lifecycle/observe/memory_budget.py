"""How much memory models may take: configured, or measured on this machine now.

- ``DXG_MEMORY_BUDGET_GB`` wins wherever it is set (and is what tests use).
- Discrete GPUs: NVML's free memory, summed over the GPUs.
- Unified memory (DGX Spark / GB10): NVML answers Not Supported for memory, as
  nvidia-smi's ``[N/A]`` shows; the memory is the system's, so ``MemAvailable`` from
  /proc/meminfo is the figure (what nvtop, gpustat and gpud fall back to as well).
- No GPU or no driver (CI, a laptop): ``MemAvailable`` too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from lifecycle.core.admission import Budget

log = logging.getLogger(__name__)

MEMINFO: Final = Path("/proc/meminfo")
GIB: Final = 1024**3


def budget(configured_gb: float | None, meminfo: Path = MEMINFO) -> Budget:
    if configured_gb is not None:
        source = f"budget {configured_gb:g} GB, DXG_MEMORY_BUDGET_GB"
        return Budget(configured_gb, measured=False, source=source)
    gpu = _nvml_free_gb()
    if gpu is not None:
        free, count = gpu
        gpus = f"{count} GPU{'s' if count > 1 else ''}"
        return Budget(free, measured=True, source=f"measured on {gpus} by NVML")
    return Budget(_mem_available_gb(meminfo), measured=True, source="measured as MemAvailable")


def _nvml_free_gb() -> tuple[float, int] | None:
    """Free memory summed over the GPUs, or None where NVML can't say (no driver, unified memory)."""
    try:
        import pynvml  # nvidia-ml-py; its import works without a driver, nvmlInit does not
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        free = sum(
            pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).free for i in range(count)
        )
        return free / GIB, count
    except pynvml.NVMLError as exc:  # NVML_ERROR_NOT_SUPPORTED on unified memory
        log.debug("NVML has no memory figure here (%s); using MemAvailable", exc)
        return None
    finally:
        pynvml.nvmlShutdown()


def _mem_available_gb(meminfo: Path) -> float:
    for line in meminfo.read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024 / GIB  # the kernel writes kB
    raise RuntimeError(f"{meminfo} has no MemAvailable line")
