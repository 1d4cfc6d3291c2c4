"""The workflow's stages as plain functions: what each Snakemake rule script calls."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import torch

from reidquant.configcheck import check_input_size
from reidquant.data import load_batch
from reidquant.errors import ReidQuantError
from reidquant.features import extract_dataset, save_mat
from reidquant.jsonio import write_json
from reidquant.market import list_prepared
from reidquant.model import Embedder, load_checkpoint
from reidquant.devices import device_available, precision, set_threads, unsupported_reason
from reidquant.variants import build_artifact, load_runner

CALIBRATED_TYPES = ("eager_int8", "pt2e_int8")
CALIBRATION_BATCH = 32


def calibration_paths(data_root: Path, count: int) -> list[Path]:
    """``count`` training images spread evenly over ``train_all`` (identities in sorted order).

    Only ``train_all`` is ever read, so no query or gallery image can reach calibration.
    """
    train = list_prepared(data_root, "train_all")
    if count > len(train):
        print(f"warning: calibration asked for {count} images but train_all has {len(train)}; using all of them",
              file=sys.stderr)
        return train
    picks = np.linspace(0, len(train) - 1, count).round().astype(int)
    return [train[i] for i in picks]


def calibration_batches(paths, height: int, width: int, batch_size: int = CALIBRATION_BATCH) -> list[torch.Tensor]:
    return [load_batch(paths[i:i + batch_size], height, width) for i in range(0, len(paths), batch_size)]


def quantize(name: str, spec: dict, weights: Path, data_root: Path, out: Path, height: int = 256,
             width: int = 128, threads: int | None = None) -> dict:
    """Build variant ``name`` from a checkpoint folder; returns what the summary needs of it."""
    check_input_size(height, width, field="input size")
    set_threads(threads)
    net, opts = load_checkpoint(weights)
    embedder = Embedder(net).eval()
    batches, used = [], 0
    if spec["type"] in CALIBRATED_TYPES:
        paths = calibration_paths(data_root, spec["calibration_images"])
        used = len(paths)
        batch = min(CALIBRATION_BATCH, spec["calibration_images"])
        batches = calibration_batches(paths, height, width, batch)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32_bytes = sum(v.numel() * v.element_size() for v in embedder.state_dict().values())
    info = build_artifact(name, spec, embedder, opts, batches, out)
    info.update({"calibration_images": used, "fp32_param_bytes": fp32_bytes, "height": height, "width": width})
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def extract_features(artifact: Path, spec: dict, device: str, data_root: Path, out: Path, timing_out: Path,
                     height: int = 256, width: int = 128, batch_size: int = 32, workers: int = 1, ms=(1,),
                     threads: int | None = None, warmup: int = 2, repeats: int = 5,
                     reference_artifact: Path | None = None, reference_spec: dict | None = None) -> dict:
    """Features of one variant on one device into ``out`` (.mat), and its timing into ``timing_out``.

    With ``reference_artifact`` (the fp32 variant), its speed is timed in alternating rounds
    with this variant's on the same batch, for the speedup.
    """
    if not device_available(device):
        raise ReidQuantError(f"device {device!r} was asked for but this machine has no CUDA device")
    reason = unsupported_reason(spec, device)
    if reason:
        raise ReidQuantError(f"variant type {spec['type']} cannot run on {device}: {reason}")
    check_input_size(height, width, ms)
    for path in (artifact, reference_artifact):
        if path is not None and not Path(path).is_file():
            raise ReidQuantError(f"{path}: variant artifact not found (build it with quantize)")
    threads = set_threads(threads)
    runner = load_runner(Path(artifact), spec, device)
    reference = None if reference_artifact is None else load_runner(Path(reference_artifact), reference_spec, device)
    mat, timing = extract_dataset(runner, Path(data_root), height, width, batch_size, workers, ms, warmup, repeats,
                                  reference)
    compiled = spec["type"] == "pt2e_int8" and spec.get("compile", True) or spec.get("compile", False)
    timing.update({
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu_model(),
        "threads": threads,
        "torch": torch.__version__,
        "precision": precision(spec),
        "compile_s": max(0.0, timing["first_call_s"] - timing["batch_s"][0]) if compiled else 0.0,
        "num_images": len(mat["query_f"]) + len(mat["gallery_f"]),
    })
    save_mat(out, mat)
    write_json(timing_out, timing)
    return timing
