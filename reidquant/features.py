"""Feature extraction into the reference project's ``.mat`` layout, and honest throughput.

Each image is embedded as-is and flipped left-right (at each ``ms`` scale, applied as
``sqrt(scale)`` like the reference test script), the embeddings summed and L2-normalised.
The final partial batch is padded to the full batch size so every forward pass has one
shape: compiled variants never recompile mid-run and all variants do the same work.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reidquant.data import load_batch, loader
from reidquant.market import labels_and_cameras, list_prepared


@dataclass
class Runner:
    """A deployable model and the input it expects; called on float32 CPU batches."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    autocast: torch.dtype | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # cuDNN picks the fastest convolution algorithm for each shape, for this model's calls only.
        tuned = torch.backends.cudnn.flags(enabled=True, benchmark=True) if self.device.startswith("cuda") \
            else contextlib.nullcontext()
        with tuned, torch.autocast(self.device.split(":")[0], dtype=self.autocast or torch.bfloat16,
                                   enabled=self.autocast is not None):
            return self.forward(x).float()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)


def scales(ms) -> list[float]:
    return [math.sqrt(float(s)) for s in ms]


def embed(runner: Runner, batch: torch.Tensor, ms=(1,)) -> torch.Tensor:
    """Sum of the embeddings of the image and its mirror image, at every scale; L2-normalised."""
    total = None
    for image in (batch, batch.flip(3)):
        for scale in scales(ms):
            x = image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bicubic",
                                                       align_corners=False)
            out = runner(x)
            total = out if total is None else total + out
    return total / total.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)


def _pad(batch: torch.Tensor, size: int) -> torch.Tensor:
    if len(batch) == size:
        return batch
    filler = batch[-1:].expand(size - len(batch), *batch.shape[1:])
    return torch.cat([batch, filler])


def extract(runner: Runner, paths, height: int, width: int, batch_size: int, workers: int,
            ms=(1,), desc: str = "features") -> np.ndarray:
    features = []
    with torch.inference_mode():
        for batch, _ in tqdm(loader(paths, height, width, batch_size, workers), desc=desc, unit="batch"):
            n = len(batch)
            features.append(embed(runner, _pad(batch, batch_size), ms)[:n].cpu())
    runner.synchronize()
    return torch.cat(features).numpy().astype(np.float32)


def timed(runner: Runner, batch: torch.Tensor) -> float:
    """Seconds one call takes, the device's queued work included."""
    start = time.perf_counter()
    runner(batch)
    runner.synchronize()
    return time.perf_counter() - start


def model_throughput(runner: Runner, batch: torch.Tensor, warmup: int, repeats: int,
                     reference: Runner | None = None) -> dict:
    """Forward passes per second on a fixed in-memory batch: warm-up (and compilation) excluded.

    With a ``reference`` (fp32 on the same device), both are timed in alternating rounds on
    the same batch, and ``speedup`` is the median of the per-round ratios: a shared machine's
    speed drifts between minutes, not between two calls a second apart.
    """
    with torch.inference_mode():
        first_call_s = timed(runner, batch)
        for _ in range(max(0, warmup - 1)):
            runner(batch)
        if reference is not None:
            for _ in range(warmup):
                reference(batch)
        runner.synchronize()
        times, reference_times = [], []
        for round_ in range(repeats):
            if reference is not None and round_ % 2 == 1:  # alternate who goes first
                reference_times.append(timed(reference, batch))
            times.append(timed(runner, batch))
            if reference is not None and round_ % 2 == 0:
                reference_times.append(timed(reference, batch))
    timing = {"model_img_per_s": len(batch) / statistics.median(times), "first_call_s": first_call_s,
              "batch_s": times, "batch_size": len(batch)}
    if reference is not None:
        ratios = np.array(reference_times) / np.array(times)
        timing.update({
            "reference_batch_s": reference_times,
            "reference_img_per_s": len(batch) / statistics.median(reference_times),
            "round_speedups": ratios.tolist(),
            "speedup": float(np.median(ratios)),
            "speedup_lo": float(np.percentile(ratios, 10)),
            "speedup_hi": float(np.percentile(ratios, 90)),
        })
    return timing


def extract_dataset(runner: Runner, root: Path, height: int, width: int, batch_size: int, workers: int,
                    ms, warmup: int, repeats: int, reference: Runner | None = None) -> tuple[dict, dict]:
    """Query and gallery features of a prepared dataset, and the throughput measured on it
    (side by side with ``reference``, when given)."""
    query, gallery = list_prepared(root, "query"), list_prepared(root, "gallery")
    # The same images for every variant: the first batch of the gallery.
    timing = model_throughput(runner, load_batch(gallery[:batch_size], height, width), warmup, repeats,
                              reference)
    start = time.perf_counter()
    query_f = extract(runner, query, height, width, batch_size, workers, ms, desc="query")
    gallery_f = extract(runner, gallery, height, width, batch_size, workers, ms, desc="gallery")
    elapsed = time.perf_counter() - start
    timing["extract_img_per_s"] = (len(query) + len(gallery)) / elapsed
    timing["extract_s"] = elapsed
    q_label, q_cam = labels_and_cameras(query)
    g_label, g_cam = labels_and_cameras(gallery)
    mat = {
        "query_f": query_f, "query_label": np.array(q_label), "query_cam": np.array(q_cam),
        "gallery_f": gallery_f, "gallery_label": np.array(g_label), "gallery_cam": np.array(g_cam),
        "query_path": np.array([p.name for p in query]), "gallery_path": np.array([p.name for p in gallery]),
    }
    return mat, timing
