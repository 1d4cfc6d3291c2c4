"""What this machine has (CPU model and flags, int8 instructions, cores, CUDA).

Read directly, without importing torch where it can be (a job asks on the node that runs it,
possibly in an environment where only the job's own packages are installed).
``REIDQUANT_HIDE_HARDWARE`` makes a process act as if the machine lacked CUDA or native
bfloat16, to run as a smaller machine would.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import gc
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from reidquant.errors import ReidQuantError

DEVICES = ("cpu", "cuda")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's entries of a ``/proc/cpuinfo`` text."""
    entries = {}
    for line in text.splitlines():
        if not line.strip():
            if entries:
                break
            continue
        key, _, value = line.partition(":")
        entries[key.strip()] = value.strip()
    return entries


# The node a process reasons about: this one, or (``as_node``) one whose identity a job
# recorded, so that the summary derives a row's labels as that job's node did.
_NODE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("reidquant_node", default=None)
# The entries of /proc/cpuinfo that the CPU's labels (model, int8 instructions, bfloat16) derive from.
IDENTITY_KEYS = ("vendor_id", "model name", "cpu family", "model", "flags", "Features", "CPU implementer",
                 "CPU part")


@functools.cache
def _this_cpuinfo() -> dict[str, str]:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}


def cpuinfo() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    assumed = _NODE.get()
    return dict(assumed["cpuinfo"]) if assumed is not None else _this_cpuinfo()


def cpu_identity() -> dict:
    """What this node's CPU labels derive from: its cpuinfo identity and what it hides."""
    info = cpuinfo()
    return {"cpuinfo": {key: info[key] for key in IDENTITY_KEYS if key in info}, "hidden": sorted(hidden())}


@contextlib.contextmanager
def as_node(identity: dict):
    """Answer as the node of ``identity`` (``cpu_identity`` recorded there) would."""
    if not (isinstance(identity, dict) and isinstance(identity.get("cpuinfo"), dict)
            and isinstance(identity.get("hidden"), list)):
        raise ReidQuantError("the recorded CPU identity is not one cpu_identity() writes")
    token = _NODE.set(identity)
    try:
        yield
    finally:
        _NODE.reset(token)


def cpu_flags(info: dict[str, str] | None = None) -> frozenset[str]:
    """x86's ``flags``, or Arm's ``Features``."""
    info = cpuinfo() if info is None else info
    return frozenset((info.get("flags") or info.get("Features") or "").split())


# A name that says which processor it is carries a model number (EPYC 7763, Platinum 8480+);
# a virtual machine's often does not ("AMD EPYC Processor", "Intel(R) Xeon(R) CPU @ 2.20GHz").
_MODEL_NUMBER = re.compile(r"\b(?=\w*\d)\w{3,}\b")  # 7763, 8488C, 9R14


def cpu_model(info: dict[str, str] | None = None) -> str:
    """The CPU's model name, with its family and model numbers where the name is generic."""
    info = cpuinfo() if info is None else info
    name = info.get("model name") or platform.processor() or platform.machine()
    if _MODEL_NUMBER.search(re.sub(r"@\s*[\d.]+\s*GHz", "", name)) or "cpu family" not in info:
        return name
    return f"{name} (family {info['cpu family']}, model {info.get('model', '?')})"


# The best int8 dot-product path of a CPU, best first. With VNNI (or AMX, or Arm's dot
# products) u8 x s8 products accumulate straight into 32 bits; without it (avx512, avx2, sse)
# they are summed in pairs into saturating 16-bit lanes first, which int8 recipes made for
# VNNI overflow.
ISAS = ("amx", "avx512_vnni", "avx_vnni", "avx512", "avx2", "sse", "neon_i8mm", "neon_dotprod", "neon", "unknown")
SATURATING_ISAS = frozenset({"avx512", "avx2", "sse"})
_ISA_FLAGS = (("amx", {"amx_int8"}), ("avx512_vnni", {"avx512_vnni"}), ("avx_vnni", {"avx_vnni"}),
              ("avx512", {"avx512bw"}), ("avx2", {"avx2"}), ("sse", {"sse4_1"}), ("neon_i8mm", {"i8mm"}),
              ("neon_dotprod", {"asimddp"}), ("neon", {"asimd"}))


def cpu_isa(flags: frozenset[str] | None = None) -> str:
    """The best int8 dot-product instruction set of the CPU (one of ``ISAS``), from its flags."""
    flags = cpu_flags() if flags is None else flags
    return next((isa for isa, needed in _ISA_FLAGS if needed <= flags), "unknown")


def saturates_int8(isa: str) -> bool:
    """Whether int8 products saturate in 16-bit lanes on ``isa`` (no VNNI)."""
    return isa in SATURATING_ISAS


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


# Hardware a process treats as absent: to run, or plan, as a machine without it would.
HIDE_ENV = "REIDQUANT_HIDE_HARDWARE"
HIDEABLE = ("cuda", "bf16")


def hidden() -> frozenset[str]:
    """What ``REIDQUANT_HIDE_HARDWARE`` (a comma-separated list of cuda, bf16) hides."""
    assumed = _NODE.get()
    if assumed is not None:
        return frozenset(assumed["hidden"])
    named = frozenset(word.strip() for word in os.environ.get(HIDE_ENV, "").split(",") if word.strip())
    unknown = sorted(named - set(HIDEABLE))
    if unknown:
        raise ReidQuantError(f"environment variable {HIDE_ENV}: {', '.join(unknown)} is not one of "
                             f"{', '.join(HIDEABLE)}")
    return named


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU computes bfloat16 natively instead of emulating it."""
    return "bf16" not in hidden() and bool({"avx512_bf16", "amx_bf16", "bf16"} & cpu_flags())


def cuda_available() -> bool:
    return "cuda" not in hidden() and _cuda_present()


@functools.cache
def _cuda_present() -> bool:
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


def node() -> str:
    """This machine's name, as a job records where it decided what it could run."""
    return platform.node() or "unknown"


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux), or None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def settled_resident_bytes() -> int | None:
    """``resident_bytes`` after freed memory went back to the system: collected, and returned by
    glibc's allocator where it is the one in use (without it, memory freed earlier is reused
    unseen and a growth reads too small)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return resident_bytes()
