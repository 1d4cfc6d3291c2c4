"""What OpenVINO's CPU plugin runs in int8 for the ``ov_int8`` variant, counted from the
compiled (runtime) graph, for comparison with ``benchmarks/int8_graph.py``'s PT2E counts.

    python benchmarks/ov_graph.py results/ov_int8/model/model.xml --out docs/benchmarks/ov_graph.md

Compiles the IR for a batch of 32 at the IR's input size with the variant's default
settings, then counts the executed layers by type and by the precision they run in.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import openvino as ov
import torch

from reidquant.jsonio import write_text

INT8 = {"i8", "u8"}


def describe(path: Path, inference_precision: str) -> str:
    core = ov.Core()
    model = core.read_model(path)
    ir_ops = Counter(op.get_type_name() for op in model.get_ops())
    shape = model.input(0).get_partial_shape()
    model.reshape([32, 3, shape[2].get_length(), shape[3].get_length()])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                                 "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": inference_precision})
    layers = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str).lower())
              for op in compiled.get_runtime_model().get_ops()]
    by_type = Counter(kind for kind, _ in layers)
    in_int8 = Counter(kind for kind, precision in layers if precision in INT8)
    # Constants, layout reorders and the model's ends hold or move data; the rest computes.
    moving = {"Const", "Reorder", "Input", "Output", "Parameter", "Result"}
    precisions = Counter(precision for kind, precision in layers if kind not in moving)
    rows = "".join(f"| {kind} | {count} | {in_int8[kind]} |\n" for kind, count in by_type.most_common()
                   if kind not in ("Parameter", "Result"))
    return (
        f"Runtime graph of `{path}` (as the `ov_int8` variant deploys it) compiled by OpenVINO "
        f"{ov.get_version().split('-')[0]} for the CPU (inference precision {inference_precision}), counted by "
        f"`benchmarks/ov_graph.py`.\n\n"
        f"The IR holds {ir_ops['FakeQuantize']} FakeQuantize nodes around {ir_ops['Convolution']} convolutions and "
        f"{ir_ops['MatMul']} MatMul. Computing layers (not constants, reorders, input or output) after the "
        f"plugin's fusions, by the precision they run in: "
        + ", ".join(f"{precision} {count}" for precision, count in precisions.most_common()) + ".\n\n"
        f"| layer type | executed layers | of which in int8 |\n|---|---|---|\n{rows}\n"
        f"Reading: a layer counts as int8 when the plugin runs it at precision i8 or u8. The element-wise\n"
        f"work between convolutions that is not fused into a convolution (on DenseNet-121, the pre-activation\n"
        f"BatchNorms' scale and shift, ReLU, requantization) is fused by the plugin into `Subgraph` layers;\n"
        f"on ResNet-50 the residual additions and ReLUs fuse into the convolutions themselves.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--inference-precision", default="f32", help="f32 (what ov_int8 uses) or bf16")
    args = parser.parse_args()
    text = describe(args.model, args.inference_precision)
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
