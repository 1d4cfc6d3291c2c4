"""What this machine has (CPU model and flags, cores, CUDA), read without importing torch.

The Snakefile asks this while it builds the job graph, possibly in an environment where
only Snakemake is installed (``--use-conda``), so it reads the machine directly.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

from reidquant.errors import ReidQuantError

DEVICES = ("cpu", "cuda")


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    entries = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            entries[key.strip()] = value.strip()
    except OSError:
        pass
    return entries


def cpu_flags() -> frozenset[str]:
    return frozenset(cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    return cpuinfo().get("model name") or platform.processor() or platform.machine()


def available_cores() -> int:
    """Cores this process may run on: a cluster job's allocation, not the whole node."""
    return len(os.sched_getaffinity(0))


def set_threads(threads: int | None) -> int:
    """Pin intra-op threads and return the number used: ``threads``, or every core this process
    may run on, and never more than that (oversubscribed cores make timings meaningless)."""
    threads = min(threads or available_cores(), available_cores())
    import torch

    torch.set_num_threads(threads)
    return threads


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU computes bfloat16 natively instead of emulating it."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        if shutil.which("nvidia-smi") is None:
            return False
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        return listing.returncode == 0 and "GPU" in listing.stdout
    return torch.cuda.is_available()


def device_available(device: str) -> bool:
    if device not in DEVICES:
        raise ReidQuantError(f"devices: unknown device {device!r} (use {' or '.join(DEVICES)})")
    return device == "cpu" or cuda_available()


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux), or None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
