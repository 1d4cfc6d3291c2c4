"""Evaluation engine at the full Market-1501 size: the chunked engine against the per-query loop.

Random features with Market-1501's shape (3,368 queries, 19,732 gallery images with
distractors and junk, 512-d); both implementations run in this one process, one after the
other, and must agree. Writes a Markdown fragment for docs/benchmarks.md.

    python benchmarks/evaluate_speed.py --out docs/benchmarks/evaluate.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from reidquant.evaluate import evaluate, evaluate_per_query
from reidquant.pipeline import cpu_model

QUERY, GALLERY, DIM, IDS = 3368, 19732, 512, 750


def market_sized(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = 0.4 * rng.normal(size=(IDS + 1, DIM)).astype(np.float32)
    q_label = np.repeat(np.arange(1, IDS + 1), 5)[:QUERY]
    q_cam = rng.integers(1, 7, QUERY)
    g_label = np.concatenate([rng.integers(1, IDS + 1, 13_000), np.zeros(3_819, int), -np.ones(2_913, int)])
    g_cam = rng.integers(1, 7, GALLERY)

    def feats(labels):
        f = np.where(labels[:, None] > 0, centres[np.clip(labels, 0, IDS)], 0) + rng.normal(
            size=(len(labels), DIM)).astype(np.float32) * 1.2
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    return feats(q_label), q_label, q_cam, feats(g_label), g_label, g_cam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="write the Markdown fragment here")
    args = parser.parse_args()
    data = market_sized()
    start = time.perf_counter()
    fast = evaluate(*data)
    fast_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    slow = evaluate_per_query(*data)
    slow_s = time.perf_counter() - start
    worst = max(abs(fast[k] - slow[k]) for k in ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP"))
    text = (
        f"Evaluation of {QUERY:,} queries against {GALLERY:,} gallery images ({DIM}-d), "
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
        f"both in one run by `benchmarks/evaluate_speed.py`.\n\n"
        f"| implementation | seconds | speed-up |\n|---|---|---|\n"
        f"| per-query loop (`evaluate_per_query`) | {slow_s:.1f} | 1.0 |\n"
        f"| chunked engine (`evaluate`) | {fast_s:.2f} | {slow_s / fast_s:.1f} |\n\n"
        f"Largest difference between the two over rank-1/5/10, mAP, mAP_noninterp, mINP: {worst:.1e}. "
        f"Peak resident memory of the process after the chunked engine: {peak_mb:.0f} MB. "
        f"mAP on this random data: {fast['mAP']:.4f}.\n"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
