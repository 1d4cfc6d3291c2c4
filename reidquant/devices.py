"""Which device can run which variant, decided without importing torch.

The Snakefile asks this while it builds the job graph, possibly in an environment where
only Snakemake is installed (``--use-conda``), so it reads the machine directly.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from reidquant.errors import ReidQuantError

DEVICES = ("cpu", "cuda")
CPU_ONLY_TYPES = ("eager_int8", "dynamic_fp16", "pt2e_int8")


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


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


def unsupported_reason(spec: dict, device: str) -> str | None:
    """Why a variant of this spec cannot run on ``device``, or None when it can."""
    kind = spec["type"]
    if device == "cuda" and kind in CPU_ONLY_TYPES:
        return f"{kind} kernels (fbgemm/oneDNN) run on CPUs only"
    if kind == "half" and device == "cpu":
        if spec["dtype"] == "float16":
            return "float16 inference is for GPUs; CPUs have no fast fp16 convolutions"
        if not cpu_has_bf16():
            return "this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated"
    return None


def precision(spec: dict) -> str:
    """The precision column of the summary for a variant spec."""
    return {
        "fp32": "fp32",
        "eager_int8": "int8 eager per-tensor",
        "dynamic_fp16": "fp32 + fp16 Linear",
        "pt2e_int8": "int8 pt2e per-channel" + (" + bf16" if spec.get("mixed_bf16", True) and cpu_has_bf16() else ""),
        "half": {"bfloat16": "bf16", "float16": "fp16"}.get(spec.get("dtype", ""), "half"),
    }[spec["type"]]
