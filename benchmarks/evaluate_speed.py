"""Evaluation engine at the full Market-1501 size: the chunked engine against the per-query loop.

Random features with Market-1501's shape (3,368 queries, 19,732 gallery images with
distractors and junk, 512-d), at two difficulties: a hard set far below a trained model
and a Market-like one near ft_net_dense's published accuracy. On each, both implementations
run in this one process and must agree; the engine's time is the median of three runs, the
loop's is one run. Fidelity (two feature sets' top-1/top-10 agreement) is timed too.
Writes a Markdown fragment for docs/benchmarks.md.

    python benchmarks/evaluate_speed.py --out docs/benchmarks/evaluate.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from reidquant.evaluate import evaluate, evaluate_per_query, fidelity
from reidquant.jsonio import write_text
from reidquant.devices import cpu_model

QUERY, GALLERY, DIM, IDS = 3368, 19732, 512, 750
METRICS = ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP")
# How far identity centres stand out of the per-image noise, and what that gives.
DIFFICULTIES = {"hard": 0.4, "Market-like": 0.55}


def market_sized(centre_scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = centre_scale * rng.normal(size=(IDS + 1, DIM)).astype(np.float32)
    q_label = np.repeat(np.arange(1, IDS + 1), 5)[:QUERY]
    q_cam = rng.integers(1, 7, QUERY)
    g_label = np.concatenate([rng.integers(1, IDS + 1, 13_000), np.zeros(3_819, int), -np.ones(2_913, int)])
    g_cam = rng.integers(1, 7, GALLERY)

    def feats(labels):
        f = np.where(labels[:, None] > 0, centres[np.clip(labels, 0, IDS)], 0) + rng.normal(
            size=(len(labels), DIM)).astype(np.float32) * 1.2
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    return feats(q_label), q_label, q_cam, feats(g_label), g_label, g_cam


def seconds(run) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def peak_mb(run) -> float:
    """Largest memory the call holds at once (numpy's allocations included), untimed."""
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def compare(data) -> dict:
    runs = [seconds(lambda: evaluate(*data)) for _ in range(3)]
    fast_s, fast = statistics.median(s for s, _ in runs), runs[0][1]
    slow_s, slow = seconds(lambda: evaluate_per_query(*data))
    worst = max(abs(fast[k] - slow[k]) for k in METRICS)
    return {"fast_s": fast_s, "runs": [s for s, _ in runs], "slow_s": slow_s, "worst": worst, "metrics": fast,
            "peak_mb": peak_mb(lambda: evaluate(*data))}


def cli_seconds(data, runs: int = 3) -> dict:
    """``python -m reidquant evaluate`` on a Market-sized .mat, beyond the process's start-up:
    the median wall time of ``runs`` calls minus the median on a tiny .mat (start-up, imports
    and the one-line report), each call a fresh process as a user runs it."""
    import subprocess
    import sys
    import tempfile

    import scipy.io

    def one(path) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reidquant", "evaluate", str(path)], check=True,
                       capture_output=True, cwd=Path(__file__).resolve().parents[1])
        return time.perf_counter() - start

    keys = ("query_f", "query_label", "query_cam", "gallery_f", "gallery_label", "gallery_cam")
    with tempfile.TemporaryDirectory() as folder:
        big, tiny = Path(folder) / "market.mat", Path(folder) / "tiny.mat"
        scipy.io.savemat(big, dict(zip(keys, data)))
        small = (data[0][:5], data[1][:5], data[2][:5], data[3][:50], data[4][:50], data[5][:50])
        small = (small[0], np.full(5, 7), np.ones(5, int), small[3], np.full(50, 7), np.full(50, 2))
        scipy.io.savemat(tiny, dict(zip(keys, small)))
        start_up = statistics.median(one(tiny) for _ in range(runs))
        total = statistics.median(one(big) for _ in range(runs))
    return {"start_up_s": start_up, "total_s": total, "beyond_s": total - start_up}


def perturbed(data, scale: float = 0.01, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for part, f in (("query_f", data[0]), ("gallery_f", data[3])):
        f = f + scale * rng.normal(size=f.shape).astype(np.float32)
        out[part] = f / np.linalg.norm(f, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="write the Markdown fragment here")
    args = parser.parse_args()
    rows = [(name, compare(market_sized(scale))) for name, scale in DIFFICULTIES.items()]
    market = market_sized(DIFFICULTIES["Market-like"])
    cli = cli_seconds(market)
    loop_s = dict(rows)["Market-like"]["slow_s"]
    pair = perturbed(market), {"query_f": market[0], "gallery_f": market[3]}
    fidelity_s, agreement = seconds(lambda: fidelity(*pair))
    fidelity_mb = peak_mb(lambda: fidelity(*pair))
    process_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = "\n".join(
        f"| {name} | {r['metrics']['rank1']:.3f} | {r['metrics']['mAP']:.3f} | {r['metrics']['mINP']:.3f} "
        f"| {r['slow_s']:.1f} | {r['fast_s']:.2f} ({', '.join(f'{s:.2f}' for s in r['runs'])}) "
        f"| {r['slow_s'] / r['fast_s']:.1f} | {r['worst']:.1e} "
        f"| {r['peak_mb']:.0f} |"
        for name, r in rows)
    text = (
        f"Evaluation of {QUERY:,} queries against {GALLERY:,} gallery images ({DIM}-d), "
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
        f"everything in one run of `benchmarks/evaluate_speed.py`. The engine's time is the median "
        f"of three runs; the loop's, one run.\n\n"
        f"| features | rank-1 | mAP | mINP | per-query loop (s) | engine (s): median (runs) | speed-up | largest difference "
        f"| engine peak (MB) |\n|---|---|---|---|---|---|---|---|---|\n{table}\n\n"
        f"Through the command line, as a user runs it: `python -m reidquant evaluate` on the "
        f"Market-like features as a .mat file took {cli['total_s']:.2f} s, of which {cli['start_up_s']:.2f} s "
        f"is the process's start-up (the same command on a tiny .mat), so {cli['beyond_s']:.2f} s of "
        f"evaluation: {loop_s / cli['beyond_s']:.1f}x faster than the per-query loop's {loop_s:.1f} s "
        f"(medians of three calls each).\n\n"
        f"\"Largest difference\" is over rank-1/5/10, mAP, mAP_noninterp and mINP between the engine "
        f"(`evaluate`) and the plain loop (`evaluate_per_query`). Fidelity (`fidelity`: cosines, "
        f"top-1 agreement, top-10 overlap) of the Market-like features against a perturbed copy of them "
        f"(top-1 agreement {agreement['top1_agreement']:.3f}, top-10 overlap "
        f"{agreement['top10_overlap']:.3f}) took {fidelity_s:.2f} s, peak {fidelity_mb:.0f} MB. "
        f"\"Peak\" is the most memory a call holds at once (tracemalloc, in a separate untimed run); "
        f"the whole process, both data sets and the loop included, peaked at {process_mb:.0f} MB resident.\n"
    )
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
