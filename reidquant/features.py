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
from dataclasses import dataclass, field, replace
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
    """A deployable model and the input it expects; called on float32 CPU batches.

    ``config`` is how its runtime was set up (threads, hints, compile options), recorded with
    its timings. Where a runtime is set up differently for latency than for throughput (an
    OpenVINO LATENCY hint), ``latency_forward`` and ``latency_config`` are that set-up.
    ``runtime``, where set, is the row's runtime label as loading decided it (its type's label
    otherwise).
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    autocast: torch.dtype | None = None
    config: dict = field(default_factory=dict)
    latency_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    latency_config: dict | None = None
    runtime: str | None = None

    def for_latency(self) -> Runner:
        """This runner as a deployer would set it up for small batches, one call at a time."""
        if self.latency_forward is None:
            return self
        return replace(self, forward=self.latency_forward, config=self.latency_config or self.config,
                       latency_forward=None, latency_config=None)

    def describe(self) -> dict:
        """The set-up its timings were measured with, for ``timing.json``."""
        return {"device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                "channels_last": self.channels_last,
                "autocast": None if self.autocast is None else str(self.autocast).removeprefix("torch."),
                "torch_threads": torch.get_num_threads(), **self.config}

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


def side_by_side(runner: Runner, batch: torch.Tensor, warmup: int, rounds: int,
                 reference: Runner | None = None) -> dict:
    """Call times of ``runner`` on ``batch``: its first call (where a runtime compiles for a new
    shape) apart, then ``warmup`` - 1 more untimed calls, then ``rounds`` timed ones.

    With a ``reference`` (fp32 on the same device), both are timed in alternating rounds on
    the same batch and the per-round ratios kept: a shared machine's speed drifts between
    minutes, not between two calls a second apart.
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
        for round_ in range(rounds):
            if reference is not None and round_ % 2 == 1:  # alternate who goes first
                reference_times.append(timed(reference, batch))
            times.append(timed(runner, batch))
            if reference is not None and round_ % 2 == 0:
                reference_times.append(timed(reference, batch))
    timing = {"first_call_s": first_call_s, "call_s": times,
              "compile_s": max(0.0, first_call_s - statistics.median(times))}
    if reference is not None:
        ratios = np.array(reference_times) / np.array(times)
        timing.update({"reference_call_s": reference_times, "round_speedups": ratios.tolist(),
                       "speedup": float(np.median(ratios)), "speedup_lo": float(np.percentile(ratios, 10)),
                       "speedup_hi": float(np.percentile(ratios, 90))})
    return timing


def rotating_rounds(runners: dict, batch: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """Call times of several runners (name -> runner, already warm for ``batch``'s shape) in
    ``rounds`` rounds, each round calling every runner once, who goes first rotating: a shared
    machine's drift falls on all of them alike."""
    names = list(runners)
    times = {name: [] for name in names}
    with torch.inference_mode():
        for round_ in range(rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                times[name].append(timed(runners[name], batch))
    return times


def model_throughput(runner: Runner, batch: torch.Tensor, warmup: int, repeats: int,
                     reference: Runner | None = None) -> dict:
    """Forward passes per second on a fixed in-memory batch: warm-up (and compilation) excluded.

    With a ``reference``, ``speedup`` is the median of the per-round ratios of the two timed
    side by side (``side_by_side``).
    """
    timed_calls = side_by_side(runner, batch, warmup, repeats, reference)
    times = timed_calls["call_s"]
    timing = {"model_img_per_s": len(batch) / statistics.median(times), "first_call_s": timed_calls["first_call_s"],
              "compile_s": timed_calls["compile_s"], "batch_s": times, "batch_size": len(batch)}
    if reference is not None:
        timing.update({"reference_batch_s": timed_calls["reference_call_s"],
                       "reference_img_per_s": len(batch) / statistics.median(timed_calls["reference_call_s"]),
                       **{k: timed_calls[k] for k in ("round_speedups", "speedup", "speedup_lo", "speedup_hi")}})
    return timing


def latency(runner: Runner, batch: torch.Tensor, warmup: int, rounds: int, reference: Runner | None = None,
            first_call_s: float | None = None) -> dict:
    """Per-call wall time at a tracker's batch size (a few crops per frame): median and 90th
    percentile in milliseconds, and the latency speedup over ``reference`` timed side by side.

    ``runner`` and ``reference`` are called as configured for latency (``Runner.for_latency``).
    ``first_call_s``: where this shape was first called earlier (the cold start), that call's
    time, so that its compilation is reported here rather than lost.
    """
    calls = side_by_side(runner.for_latency(), batch, warmup, rounds,
                         None if reference is None else reference.for_latency())
    times_ms = np.array(calls["call_s"]) * 1000
    if first_call_s is not None:
        calls["first_call_s"] = first_call_s
        calls["compile_s"] = max(0.0, first_call_s - float(np.median(times_ms)) / 1000)
    return {"batch_size": len(batch), "median_ms": float(np.median(times_ms)),
            "p90_ms": float(np.percentile(times_ms, 90)), **calls}


def extract_dataset(runner: Runner, root: Path, height: int, width: int, batch_size: int, workers: int,
                    ms) -> tuple[dict, dict]:
    """Query and gallery features of a prepared dataset in the ``.mat`` layout, and how long the
    whole extraction took (loading, flip and every scale included)."""
    query, gallery = list_prepared(root, "query"), list_prepared(root, "gallery")
    start = time.perf_counter()
    # One pass over both: one worker started, one partial batch padded.
    both = extract(runner, query + gallery, height, width, batch_size, workers, ms, desc="query and gallery")
    elapsed = time.perf_counter() - start
    query_f, gallery_f = both[:len(query)], both[len(query):]
    q_label, q_cam = labels_and_cameras(query)
    g_label, g_cam = labels_and_cameras(gallery)
    mat = {
        "query_f": query_f, "query_label": np.array(q_label), "query_cam": np.array(q_cam),
        "gallery_f": gallery_f, "gallery_label": np.array(g_label), "gallery_cam": np.array(g_cam),
        "query_path": np.array([p.name for p in query]), "gallery_path": np.array([p.name for p in gallery]),
    }
    return mat, {"extract_img_per_s": (len(query) + len(gallery)) / elapsed, "extract_s": elapsed,
                 "num_images": len(query) + len(gallery)}


def timing_images(root: Path, height: int, width: int, sizes) -> tuple[dict[int, torch.Tensor], int]:
    """The same images for every variant: the first ``size`` gallery images, for each size; and
    how many copies of the last one fill the largest batch where the gallery has fewer images."""
    gallery = list_prepared(root, "gallery")
    largest = load_batch(gallery[:max(sizes)], height, width)
    copies = max(sizes) - len(largest)
    if copies:
        largest = _pad(largest, max(sizes))
    return {size: largest[:size].contiguous() for size in sizes}, copies
