"""Which ONNX Runtime int8 recipe runs the network fastest on this CPU, and at what fidelity.

    snakemake --cores 4 results/summary.csv
    python benchmarks/ort_int8_recipes.py --out docs/benchmarks/ort_int8_recipes_zen3.md

Builds ``ort_int8`` with each recipe of ``RECIPES`` from the finished run's weights, calibrated
on the same training images as the run's row; then, in one process, times every recipe and the
run's ``ort_fp32`` in rotating rounds on the same gallery images, at the throughput batch and
at batch 1 (warm-up out), and embeds the val images (training identities, never calibrated on)
to measure each recipe's worst and mean cosine to eager fp32. What ONNX Runtime makes of each
graph is counted in the model it runs after its optimisations: the int8 kernels, the
Quantize/DequantizeLinear nodes left, and the float operators between them.

The choice rule: the fastest recipe at the throughput batch whose val cos_min is at least 0.995.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml

from reidquant import sources
from reidquant.configcheck import checked, schema_part
from reidquant.data import load_batch
from reidquant.devices import cpu_flags, cpu_isa, cpu_model, set_threads
from reidquant.features import embed, rotating_rounds, timing_images
from reidquant.jsonio import write_text
from reidquant.market import list_prepared
from reidquant.pipeline import quantize
from reidquant.variants import complete, load_runner
from reidquant.variants.onnxruntime import OPTIMIZATION_LEVELS

MIN_COSINE = 0.995
# Recipe -> the ort_int8 options it changes. Load-time options (graph_optimization) reuse the
# build of the recipe they are listed after.
RECIPES = {
    "default: qdq, u8 activations, per-channel": {},
    "graph_optimization extended (no NCHWc layout)": {"graph_optimization": "extended"},
    "s8 activations (S8S8)": {"activation_type": "int8"},
    "qoperator (QLinearConv in the file)": {"quant_format": "qoperator"},
    "per-tensor weights": {"per_channel": False},
}
BUILD_KEYS = ("quant_format", "activation_type", "per_channel", "reduce_range", "calibrate_method",
              "calibration_images")


def optimized_ops(path: Path, spec: dict, threads: int) -> collections.Counter:
    """Operator counts of the graph ONNX Runtime runs for ``path`` after its optimisations."""
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   OPTIMIZATION_LEVELS[spec["graph_optimization"]])
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
        return collections.Counter(node.op_type for node in graph.node)


def speeds(runners: dict, batch: torch.Tensor, rounds: int, reference: str) -> dict:
    """Per runner: median seconds per call and the per-round ratios to ``reference``, timed in
    rotating rounds after two untimed calls each (warm-up and any compilation for this shape)."""
    with torch.inference_mode():
        for runner in runners.values():
            runner(batch)
            runner(batch)
    times = rotating_rounds(runners, batch, rounds)
    base = np.array(times[reference])
    return {name: {"median_s": statistics.median(t), "ratios": base / np.array(t)} for name, t in times.items()}


def val_embeddings(runner, data: Path, height: int, width: int, ms) -> np.ndarray:
    paths = list_prepared(data, "val")
    with torch.inference_mode():
        return torch.cat([embed(runner, load_batch(paths[i:i + 32], height, width), ms)
                          for i in range(0, len(paths), 32)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--weights", type=Path, default=Path("results/train/synthetic"))
    parser.add_argument("--data", type=Path, default=sources.PREPARED["synthetic"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    size = checked(config.get("input", {}), schema_part("input"), "input")
    extract = checked(config.get("extract", {}), schema_part("extract"), "extract")
    height, width, ms, batch_size = size["height"], size["width"], extract["ms"], extract["batch_size"]
    threads = set_threads(config.get("threads"))
    base_spec = complete(config["variants"]["ort_int8"])
    fp32_spec = complete(config["variants"]["fp32"])
    specs = {name: complete({**base_spec, **change}) for name, change in RECIPES.items()}
    scratch = Path(tempfile.mkdtemp(prefix="ort_int8_recipes-", dir=args.results))
    folders, built = {}, {}
    for name, spec in specs.items():
        build = tuple(spec[key] for key in BUILD_KEYS)
        if build not in built:
            folder = scratch / f"recipe{len(built)}"
            info = quantize(f"ort_int8 ({name})", spec, args.weights, args.data, folder, height, width,
                            threads=threads)
            built[build] = (folder, info["quantize_s"])
        folders[name] = built[build]
    runners = {"ort_fp32": load_runner(args.results / "ort_fp32" / "model", complete(config["variants"]["ort_fp32"]),
                                       "cpu", "ort_fp32")}
    runners.update({name: load_runner(folders[name][0], spec, "cpu", name) for name, spec in specs.items()})
    eager = load_runner(args.results / "fp32" / "model", fp32_spec, "cpu", "fp32")
    reference = val_embeddings(eager, args.data, height, width, ms)
    images, _ = timing_images(args.data, height, width, {1, batch_size})
    speed = {b: speeds(runners, images[b], args.rounds, "ort_fp32") for b in (batch_size, 1)}
    rows = []
    for name, spec in specs.items():
        cosines = np.sum(val_embeddings(runners[name], args.data, height, width, ms) * reference, axis=1)
        ops = optimized_ops(folders[name][0] / "model.onnx", spec, threads)
        int8_kernels = sum(count for op, count in ops.items() if op.startswith(("QLinear", "QGemm", "MatMulInteger",
                                                                                  "ConvInteger")))
        qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
        floats = sum(ops[op] for op in ("Conv", "Mul", "Add", "Relu", "Concat", "AveragePool", "MaxPool",
                                        "BatchNormalization", "Gemm", "MatMul", "FusedConv", "NchwcConv"))
        row = {"recipe": name, "cos_min": float(cosines.min()), "cos_mean": float(cosines.mean()),
               "build_s": folders[name][1], "int8_kernels": int8_kernels, "qdq": qdq, "float_ops": floats}
        for b in (batch_size, 1):
            ratios = speed[b][name]["ratios"]
            row[f"b{b}"] = (float(np.median(ratios)), *np.percentile(ratios, [10, 90]))
            row[f"b{b}_ms"] = speed[b][name]["median_s"] * 1000
        rows.append(row)
    eligible = [row for row in rows if row["cos_min"] >= MIN_COSINE]
    chosen = max(eligible, key=lambda row: row[f"b{batch_size}"][0])["recipe"] if eligible else None
    flags = " ".join(sorted(flag for flag in cpu_flags() if flag.startswith(("avx", "amx", "vnni"))))
    fp32_ms = {b: speed[b]["ort_fp32"]["median_s"] * 1000 for b in (batch_size, 1)}
    lines = [
        f"# ONNX Runtime int8 recipes on {cpu_model()}",
        "",
        f"CPU: {cpu_model()} (int8 instructions {cpu_isa()}; flags {flags}), {threads} threads, onnxruntime "
        f"{ort.__version__}, input {height}x{width}, the run's weights ({args.weights}) and calibration "
        f"({base_spec['calibration_images']} training images, {base_spec['calibrate_method']}). Every recipe and "
        f"`ort_fp32` timed in {args.rounds} rotating rounds in one process on the same gallery images "
        f"(`ort_fp32`: {fp32_ms[batch_size]:.1f} ms per batch of {batch_size}, {fp32_ms[1]:.1f} ms at batch 1); "
        f"x ort_fp32: the median of the per-round ratios [10th, 90th percentile]. cos_min, cos_mean: each val "
        f"image's embedding (training identities, never calibrated on) against eager fp32's. Ops: in the graph "
        f"ONNX Runtime runs after its optimisations.",
        "",
        f"| recipe | x ort_fp32 at batch {batch_size} | x ort_fp32 at batch 1 | val cos_min | val cos_mean | "
        "int8 kernels | Q/DQ nodes left | float ops | build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mark = " **(chosen)**" if row["recipe"] == chosen else ""
        cells = [f"{row['recipe']}{mark}"] + [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in
                                              (row[f"b{batch_size}"], row["b1"])]
        cells += [f"{row['cos_min']:.4f}", f"{row['cos_mean']:.5f}", str(row["int8_kernels"]), str(row["qdq"]),
                  str(row["float_ops"]), f"{row['build_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Chosen by the rule (the fastest at batch {batch_size} with val cos_min >= {MIN_COSINE}): "
                  f"{chosen or 'none'}.", ""]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
