"""How close the int8 rows come to this CPU's int8 matrix-multiply peak.

    snakemake --cores 4 results/summary.csv && python benchmarks/int8_peak.py

Measures the int8 GEMM rate of the machine's cores on a 2048 x 2048 x 2048 product, u8
activations times s8 weights into int32, by ONNX Runtime's ``MatMulInteger`` (its MLAS kernels:
VNNI or AMX where the CPU has them, AVX2's pairwise 16-bit sums otherwise), and the fp32 rate of
a PyTorch matmul of the same size; then counts the network's multiply-accumulates per image at
the run's input size (every convolution and linear layer, from forward hooks) and prints, for
each int8 row of ``summary.csv``, the rate its throughput implies and its share of the int8 peak.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from onnx import TensorProto, helper, numpy_helper

from reidquant.devices import cpu_isa, cpu_model, set_threads
from reidquant.model import Embedder, load_checkpoint

SIZE = 2048
ROUNDS = 10


def int8_gemm_rate(threads: int) -> float:
    """Multiply-accumulates per second of ONNX Runtime's u8 x s8 MatMulInteger, median of ROUNDS."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-128, 128, (SIZE, SIZE), dtype=np.int8), "B")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "gemm",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [SIZE, SIZE])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [SIZE, SIZE])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    return SIZE ** 3 / statistics.median(timed(lambda: session.run(None, {"A": a})) for _ in range(ROUNDS))


def openvino_int8_gemm_rate(threads: int) -> float:
    """The same product in OpenVINO: u8 activations (a FakeQuantize) times s8 weights, which its
    CPU plugin runs as one int8 FullyConnected (oneDNN); the quantize pass included."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([SIZE, SIZE], np.float32, name="x")
    low, high = ops.constant(np.float32(0)), ops.constant(np.float32(2.55))
    weights = ops.multiply(ops.convert(ops.constant(rng.integers(-127, 128, (SIZE, SIZE)).astype(np.int8)), np.float32),
                           ops.constant(np.full((SIZE, 1), 0.01, np.float32)))
    product = ops.matmul(ops.fake_quantize(x, low, high, low, high, 256), weights, False, True)
    compiled = ov.Core().compile_model(ov.Model([product], [x]), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request, a = compiled.create_infer_request(), rng.uniform(0, 2.55, (SIZE, SIZE)).astype(np.float32)
    return SIZE ** 3 / statistics.median(timed(lambda: request.infer({0: a})) for _ in range(ROUNDS))


def fp32_gemm_rate() -> float:
    x, y = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
    return SIZE ** 3 / statistics.median(timed(lambda: x @ y) for _ in range(ROUNDS))


def timed(call) -> float:
    call()  # warm: the first call of a shape packs and allocates
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def macs_per_image(weights: Path, height: int, width: int) -> int:
    """Multiply-accumulates of one image through every convolution and linear layer."""
    embedder = Embedder(load_checkpoint(weights)[0]).eval()
    total = [0]

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in embedder.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                          torch.nn.Linear))]
    with torch.inference_mode():
        embedder(torch.zeros(1, 3, height, width))
    for hook in hooks:
        hook.remove()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, default=Path("results/summary.csv"))
    parser.add_argument("--weights", type=Path, default=Path("results/train/synthetic"))
    args = parser.parse_args()
    threads = set_threads(None)
    table = pd.read_csv(args.summary)
    height, width = int(table["height"].iloc[0]), int(table["width"].iloc[0])
    mlas, onednn, fp32 = int8_gemm_rate(threads), openvino_int8_gemm_rate(threads), fp32_gemm_rate()
    peak = max(mlas, onednn)  # the faster library's: the peak measured, not the instructions' own
    macs = macs_per_image(args.weights, height, width)
    print(f"{cpu_model()} (int8 instructions {cpu_isa()}), {threads} threads: int8 GEMM {SIZE}^3 u8 x s8: "
          f"onnxruntime {ort.__version__} MatMulInteger (MLAS) {mlas / 1e9:.0f} GMAC/s, OpenVINO FullyConnected "
          f"(oneDNN) {onednn / 1e9:.0f} GMAC/s; fp32 GEMM (torch) {fp32 / 1e9:.0f} GMAC/s; the network at "
          f"{height}x{width}: {macs / 1e9:.3f} GMAC per image")
    for row in table[table["precision"].str.startswith("int8")].itertuples():
        rate = row.model_img_per_s * macs
        print(f"{row.variant} ({row.precision}, {row.runtime}): {row.model_img_per_s:.1f} images/s at batch "
              f"{row.batch_size} = {rate / 1e9:.0f} GMAC/s, {rate / peak:.0%} of the int8 GEMM peak "
              f"(cos_min {row.cos_min:.4f})")


if __name__ == "__main__":
    main()
