"""What an OpenVINO row's resident memory holds, step by step, and which settings lower it.

    snakemake --cores 4 results/summary.csv
    python benchmarks/ov_memory.py --out docs/benchmarks/ov_memory.md

For ``ov_fp32`` and ``ov_int8`` of a finished run, each setting in ``SETTINGS`` is measured in a
fresh process (nothing another model left behind): the resident memory after reading the IR,
after compiling it for batch 1 with the LATENCY hint (the row's latency set-up), after the first
call and after the warm-up (10 calls), each read as it is and settled (garbage collected, freed
memory handed back by glibc's ``malloc_trim``, as ``mem_mb`` is read), and the median batch-1
latency of 30 calls, so that a setting that saves memory by losing speed shows it.

    python benchmarks/ov_memory.py --speed

instead times each row with snippets on and off side by side in one process (alternating
rounds: 30 at batch 1, 8 at batch 32, LATENCY hint), the speed the snippets setting costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from reidquant.devices import cpu_flags, cpu_isa, cpu_model
from reidquant.jsonio import write_text

# Setting -> (Core properties, compile properties) beside the row's own latency set-up.
SETTINGS = {
    "the row's set-up": ({}, {}),
    "no mmap of the weights": ({"ENABLE_MMAP": False}, {}),
    "no primitive cache": ({}, {"CPU_RUNTIME_CACHE_CAPACITY": 0}),
    "one stream": ({}, {"NUM_STREAMS": 1}),
    "snippets off (variant option snippets: false)": ({}, {"SNIPPETS_MODE": "DISABLE"}),
}
MEASURE = r"""
import json, statistics, sys, time
import numpy as np
import openvino as ov
from reidquant.devices import resident_bytes, settled_resident_bytes, set_threads

path, height, width, core_props, compile_props = json.loads(sys.argv[1])
threads = set_threads(None)
found = {}
def read(step):
    found[step] = resident_bytes() / 1e6
    found[step + " (settled)"] = settled_resident_bytes() / 1e6
read("start")
core = ov.Core()
if core_props:
    core.set_property(core_props)
model = core.read_model(path)
read("IR read")
model.reshape([1, 3, height, width])
config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
          **compile_props}
compiled = core.compile_model(model, "CPU", config)
request = compiled.create_infer_request()
read("compiled")
image = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
request.infer({0: image})
read("first call")
for _ in range(10):
    request.infer({0: image})
read("warm")
times = []
for _ in range(30):
    start = time.perf_counter()
    request.infer({0: image})
    times.append(time.perf_counter() - start)
found["latency_ms"] = statistics.median(times) * 1000
print(json.dumps(found))
"""


def measure(path: Path, height: int, width: int, core_props: dict, compile_props: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps([str(path), height, width, core_props,
                                                                          compile_props])],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def snippets_speed(results: Path, height: int, width: int) -> None:
    """Each row with snippets on and off, compiled in one process, timed in alternating rounds."""
    import time

    import numpy as np
    import openvino as ov

    from reidquant.devices import set_threads

    threads, core = set_threads(None), ov.Core()

    def request(path, batch, snippets):
        model = core.read_model(path)
        model.reshape([batch, 3, height, width])
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  **({} if snippets else {"SNIPPETS_MODE": "DISABLE"})}
        return core.compile_model(model, "CPU", config).create_infer_request()

    print(f"{cpu_model()}, {threads} threads, openvino {ov.__version__}")
    for row in ("ov_int8", "ov_fp32"):
        for batch, rounds in ((1, 30), (32, 8)):
            x = np.random.default_rng(0).standard_normal((batch, 3, height, width)).astype(np.float32)
            requests = {on: request(results / row / "model" / "model.xml", batch, on) for on in (True, False)}
            for compiled in requests.values():
                compiled.infer({0: x}), compiled.infer({0: x})
            times = {True: [], False: []}
            for round_ in range(rounds):
                for on in ((True, False) if round_ % 2 else (False, True)):
                    start = time.perf_counter()
                    requests[on].infer({0: x})
                    times[on].append(time.perf_counter() - start)
            ratio = np.array(times[False]) / np.array(times[True])  # speed with snippets off, against on
            print(f"{row} batch {batch}: snippets on {statistics.median(times[True]) * 1e3:.1f} ms, off "
                  f"{statistics.median(times[False]) * 1e3:.1f} ms; off runs at {1 / np.median(ratio):.3f}x the speed "
                  f"[{1 / np.percentile(ratio, 90):.3f}, {1 / np.percentile(ratio, 10):.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per (row, setting); medians shown")
    parser.add_argument("--speed", action="store_true", help="time snippets on against off instead")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.speed:
        snippets_speed(args.results, args.height, args.width)
        return
    if args.out is None:
        parser.error("--out is required")
    steps = ["IR read", "compiled", "first call", "warm"]
    flags = " ".join(sorted(flag for flag in cpu_flags() if flag.startswith(("avx", "amx"))))
    lines = [f"# What OpenVINO's rows hold in memory, on {cpu_model()}", "",
             f"CPU: {cpu_model()} (int8 instructions {cpu_isa()}; flags {flags}). Resident memory added since the "
             f"process started (MB), each step read as it is / settled (freed memory handed back first, as "
             f"`mem_mb` is read); the median of {args.repeats} fresh processes per row and setting. Batch 1, "
             f"LATENCY hint, input {args.height}x{args.width}; latency: median of 30 calls.", "",
             "| row | setting | " + " | ".join(steps) + " | batch-1 ms |", "|---|---|" + "---|" * (len(steps) + 1)]
    for row in ("ov_fp32", "ov_int8"):
        path = args.results / row / "model" / "model.xml"
        for name, (core_props, compile_props) in SETTINGS.items():
            runs = [measure(path, args.height, args.width, core_props, compile_props) for _ in range(args.repeats)]

            def median(key):
                return statistics.median(run[key] - run["start" + (" (settled)" if "settled" in key else "")]
                                         for run in runs)
            cells = [f"{median(step):.0f} / {median(step + ' (settled)'):.0f}" for step in steps]
            latency = statistics.median(run["latency_ms"] for run in runs)
            lines.append(f"| {row} | {name} | " + " | ".join(cells) + f" | {latency:.1f} |")
            print(lines[-1], flush=True)
    write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
