"""Our PT2E int8 against OpenVINO's int8, side by side in one process, and what was tried
to close the gap.

    python benchmarks/int8_runtimes.py --results results --out docs/benchmarks/int8_runtimes.md
    python benchmarks/int8_runtimes.py --batch 1 --out docs/benchmarks/int8_runtimes_b1.md

Loads the finished run's ``int8`` (PT2E, Inductor) and ``ov_int8`` (OpenVINO + NNCF)
artifacts, plus PT2E compiled with other Inductor settings, and times them on the same
batch of gallery images (32, or ``--batch``: a tracker's latency calls) in rotating rounds,
each runtime set up for latency (warm-up and compilation excluded): the median
of each one's per-round ratio to ``ov_int8``. Also times Inductor's compilation of the int8
program in a fresh process with an empty compile cache and again with the cache the first
one left (how a rerun of the workflow compiles).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from reidquant.configcheck import checked, schema_part
from reidquant.data import load_batch
from reidquant.devices import cpu_has_bf16, cpu_model, set_threads
from reidquant.features import Runner, rotating_rounds, timed
from reidquant.jsonio import write_text
from reidquant.market import list_prepared
from reidquant.variants import complete, load_runner
from reidquant.variants.pt2e_int8 import compiled, inductor_options

ROUNDS = 10
# What compiling the int8 program in a fresh process costs (run as a child process).
COMPILE_ONCE = """
import sys, time, torch
import torchao.quantization.pt2e.quantize_pt2e, torchao.quantization.pt2e.quantizer.x86_inductor_quantizer
from reidquant.variants.pt2e_int8 import compiled, inductor_options
module = torch.export.load(open(sys.argv[1], "rb")).module()
batch = torch.randn(int(sys.argv[5]), 3, int(sys.argv[2]), int(sys.argv[3])).contiguous(
    memory_format=torch.channels_last)
forward = compiled(module, inductor_options())
start = time.perf_counter()
with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=sys.argv[4] == "1"):
    forward(batch)
print(time.perf_counter() - start)
"""


def pt2e_with(path: Path, options: dict, mixed_bf16: bool) -> Runner:
    """The int8 program compiled with other Inductor options (the workflow's load, varied)."""
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - registers the int8 lowerings
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    with open(path, "rb") as handle:
        module = torch.export.load(handle).module()
    return Runner(compiled(module, options), channels_last=True, autocast=torch.bfloat16 if mixed_bf16 else None)


def compile_seconds(path: Path, height: int, width: int, mixed_bf16: bool, cache: str, batch: int) -> float:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", COMPILE_ONCE, str(path), str(height), str(width),
                          str(int(mixed_bf16)), str(batch)], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--data", type=Path, default=Path("Market/synthetic/pytorch"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=int, default=32, help="images per call")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    import yaml

    config = yaml.safe_load(args.config.read_text())
    variants = config["variants"]
    threads = set_threads(None)
    int8_spec, ov_spec = complete(variants["int8"]), complete(variants["ov_int8"])
    pt2e_path = args.results / "int8" / "model" / "model.pt2"
    mixed = int8_spec["mixed_bf16"] and cpu_has_bf16()
    runners = {
        "ov_int8 (OpenVINO + NNCF)": load_runner(args.results / "ov_int8" / "model", ov_spec, "cpu", "ov_int8"),
        "int8 (PT2E + Inductor, as the workflow runs it)": load_runner(args.results / "int8" / "model", int8_spec,
                                                                      "cpu", "int8"),
        "int8 + Inductor cpp_wrapper": pt2e_with(pt2e_path, {**inductor_options(), "cpp_wrapper": True}, mixed),
        "int8 without bf16 between int8 kernels": pt2e_with(pt2e_path, inductor_options(), False),
        "int8 without weight freezing": pt2e_with(pt2e_path, {**inductor_options(), "freezing": False}, mixed),
    }
    gallery = list_prepared(args.data, "gallery")
    size = checked(config.get("input", {}), schema_part("input"), "input")
    height, width = size["height"], size["width"]
    batch = load_batch(gallery[:args.batch], height, width)
    runners = {name: runner.for_latency() for name, runner in runners.items()}
    compile_s = {}
    with torch.inference_mode():
        for name, runner in runners.items():
            compile_s[name] = timed(runner, batch)
            runner(batch)
    names = list(runners)
    times = rotating_rounds(runners, batch, args.rounds)
    reference = np.array(times[names[0]])
    lines = [
        f"`benchmarks/int8_runtimes.py --batch {args.batch}` on {cpu_model()} ({threads} threads), torch "
        f"{torch.__version__}, batch of {args.batch} gallery images at {height}×{width}, {args.rounds} rotating "
        f"rounds, each runtime set up for latency (OpenVINO's LATENCY hint); ratio = the median of the per-round "
        f"ratios of `ov_int8`'s time to the row's (below 1: slower than OpenVINO).\n",
        "| runner | ms per call (median) | images/s | ratio to ov_int8 [min, max over rounds] | first call "
        "(compile) s |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        ratios = reference / np.array(times[name])
        median = statistics.median(times[name])
        lines.append(f"| {name} | {median * 1000:.1f} | {args.batch / median:.1f} | {np.median(ratios):.2f} "
                     f"[{ratios.min():.2f}, {ratios.max():.2f}] | {compile_s[name]:.1f} |")
    with tempfile.TemporaryDirectory() as cache:
        cold = compile_seconds(pt2e_path, height, width, mixed, cache, args.batch)
        warm = compile_seconds(pt2e_path, height, width, mixed, cache, args.batch)
    lines.append(f"\nCompiling the int8 program in a fresh process (first call at batch {args.batch}): {cold:.1f} s "
                 f"with an empty "
                 f"Inductor cache, {warm:.1f} s in the next process, which finds the compiled graph in "
                 f"Inductor's on-disk cache (`TORCHINDUCTOR_CACHE_DIR`, by default under /tmp), as a rerun of "
                 f"the workflow on the same machine does.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
