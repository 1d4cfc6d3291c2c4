"""What a new batch size costs each runtime: the first call at each shape, and the steady
time per call after it.

    python benchmarks/batch_shapes.py --results results --out docs/benchmarks/batch_shapes.md

Each runner of a finished run is loaded in a fresh process (an empty Inductor cache for each,
as on a fresh machine) and called at batch 1 (the cold start), then at the throughput batch,
then at each other latency batch, in the order the extraction job calls them; then timed at
each shape (median of several calls). A runtime that compiles per shape pays at each first
call; one whose graph has a symbolic batch pays once, but may run slower at every call. The
PT2E program is also run as torch.compile makes it by default, once a second shape arrives
(a symbolic batch), which is what the workflow did before it compiled per shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from reidquant.configcheck import checked, schema_part
from reidquant.devices import cpu_model, set_threads
from reidquant.features import timed, timing_images
from reidquant.jsonio import write_text
from reidquant.variants import complete, load_runner

RUNNERS = ["fp32", "int8", "int8 (torch.compile's default: a symbolic batch from the second shape)",
           "ov_int8", "ort_int8", "int8_seed"]
CALLS = 10


def runner_for(name: str, results: Path, variants: dict):
    """The workflow's runner of variant ``name``; the PT2E program compiled as torch.compile's default."""
    if name.startswith("int8 ("):
        from reidquant.variants.pt2e_int8 import compiled, inductor_options

        runner = load_runner(results / "int8" / "model", {**complete(variants["int8"]), "compile": False}, "cpu")
        runner.forward = compiled(runner.forward, inductor_options(), dynamic=None)
        return runner
    return load_runner(results / name / "model", complete(variants[name]), "cpu", name)


def measure_one(name: str, results: Path, data: Path, config: dict) -> dict:
    """In this process: the first call at each shape, then the steady time at each."""
    set_threads(None)
    size = checked(config.get("input", {}), schema_part("input"), "input")
    bench = checked(config.get("benchmark", {}), schema_part("benchmark"), "benchmark")
    batch = checked(config.get("extract", {}), schema_part("extract"), "extract")["batch_size"]
    shapes = [1, batch] + [b for b in bench["latency_batches"] if b not in (1, batch)]
    images, _ = timing_images(data, size["height"], size["width"], shapes)
    out = {"shapes": shapes}
    start = time.perf_counter()
    runner = runner_for(name, results, config["variants"]).for_latency()
    with torch.inference_mode():
        out["load_s"] = time.perf_counter() - start
        out["first_s"] = {b: timed(runner, images[b]) for b in shapes}
        out["steady_ms"] = {b: statistics.median(timed(runner, images[b]) for _ in range(CALLS)) * 1000
                            for b in shapes}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--data", type=Path, default=Path("Market/synthetic/pytorch"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run in the child process
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    if args.one:
        print(json.dumps(measure_one(args.one, args.results, args.data, config)))
        return
    measured = {}
    for name in RUNNERS:
        with tempfile.TemporaryDirectory() as cache:
            child = subprocess.run([sys.executable, __file__, "--one", name, "--results", str(args.results),
                                    "--data", str(args.data), "--config", str(args.config)],
                                   capture_output=True, text=True, check=True,
                                   env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
        measured[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(name, measured[name], file=sys.stderr)
    shapes = measured[RUNNERS[0]]["shapes"]
    lines = [
        f"`benchmarks/batch_shapes.py` on {cpu_model()} ({torch.get_num_threads()} threads), torch "
        f"{torch.__version__}: each runner in a fresh process with an empty Inductor cache, called at batch "
        f"{', then '.join(map(str, shapes))} (the extraction job's order: the cold start at batch 1, the "
        f"throughput batch, the other latency batches), then timed at each shape (median of {CALLS} calls).\n",
        "| runner | load s | " + " | ".join(f"first call at batch {b}, s" for b in shapes) + " | "
        + " | ".join(f"ms per call at batch {b} (per image)" for b in shapes) + " |",
        "|---|---|" + "---|" * (2 * len(shapes)),
    ]
    for name in RUNNERS:
        m = measured[name]
        first = [f"{m['first_s'][str(b)]:.1f}" for b in shapes]
        steady = [f"{m['steady_ms'][str(b)]:.1f} ({m['steady_ms'][str(b)] / b:.1f})" for b in shapes]
        lines.append(f"| {name} | {m['load_s']:.1f} | " + " | ".join(first + steady) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
