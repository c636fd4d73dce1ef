"""Facts about the machine a run was measured on, stored with the run.

GPU facts come from NVML where a driver exists; on a DGX Spark (GB10, unified
memory) NVML's memory queries answer Not Supported, so memory falls back to
the host's. A machine without a GPU records why there is none.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psutil


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_facts() -> dict[str, Any]:
    try:
        import pynvml  # nvidia-ml-py; its import works without a driver, nvmlInit does not
    except ImportError:
        return {"available": False, "reason": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"available": False, "reason": f"no NVIDIA driver ({exc})"}
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpu: dict[str, Any] = {"index": index, "name": pynvml.nvmlDeviceGetName(handle)}
            try:
                gpu["memory_total_mib"] = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            except pynvml.NVMLError:
                gpu["memory_total_mib"] = None  # unified memory (GB10): see the host's memory
            gpus.append(gpu)
        return {"available": True, "driver": pynvml.nvmlSystemGetDriverVersion(), "gpus": gpus}
    except pynvml.NVMLError as exc:
        return {"available": False, "reason": f"NVML failed: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def host_facts() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "pid": os.getpid(),  # the measuring process: a run it leaves 'running' when it dies is orphaned
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_mib": psutil.virtual_memory().total // 2**20,
        "gpu": gpu_facts(),
    }
