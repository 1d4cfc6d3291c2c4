"""What the PT2E int8 graph does at DenseNet's concatenations and pre-activation BatchNorms (or ResNet-50's folded ones).

    python benchmarks/int8_graph.py results/int8/model/model.pt2 --out docs/benchmarks/int8_graph.md

Reads the exported program the ``int8`` variant deploys and counts, from its nodes, which
convolutions run on int8 weights, which BatchNorms were folded away, what feeds the
remaining ones, and whether each concatenation's inputs share quantization parameters. Then,
in the AOTInductor package the build compiled from it (``model_compiled.pt2`` beside it), the
library calls its generated C++ makes: whether every convolution and the embedding Linear
still run on oneDNN's int8 kernels once compiled ahead of time (pytorch/ao#4566 saw quantized
Linear layers fall back to fp32 there).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from collections import Counter
from pathlib import Path

import torch

from reidquant.jsonio import write_text

Q = "quantized_decomposed.quantize_per_tensor.default"
DQ = "quantized_decomposed.dequantize_per_tensor.default"
DQ_CHANNEL = "quantized_decomposed.dequantize_per_channel.default"


def target(node) -> str:
    return str(node.target) if node.op == "call_function" else node.op


def describe(path: Path) -> str:
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - registers the quantized ops

    with open(path, "rb") as handle:
        graph = torch.export.load(handle).graph
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    ops = Counter(target(n) for n in nodes)
    convs = [n for n in nodes if target(n) == "aten.conv2d.default"]
    int8_convs = sum(target(n.args[1]) == DQ_CHANNEL for n in convs)
    norms = [n for n in nodes if target(n) == "aten.batch_norm.default"]
    norm_from_dq = sum(target(n.args[0]) == DQ for n in norms)
    norm_to_q = sum(any(target(u) == Q or any(target(v) == Q for v in u.users) for u in n.users) for n in norms)
    cats = [n for n in nodes if target(n) == "aten.cat.default"]
    shared = 0
    for cat in cats:
        params = {tuple(i.args[1:3]) for i in cat.args[0] if target(i) == DQ}
        shared += len(params) == 1
    linears = [n for n in nodes if target(n) == "aten.linear.default"]
    return (
        f"Graph of `{path}` (as the `int8` variant deploys it), counted by `benchmarks/int8_graph.py`.\n\n"
        f"| what | count |\n|---|---|\n"
        f"| convolutions on int8 per-channel weights | {int8_convs} of {len(convs)} |\n"
        f"| BatchNorms left in the graph (the rest folded into the preceding conv) | {len(norms)} |\n"
        f"| ... of which read a dequantized int8 tensor | {norm_from_dq} |\n"
        f"| ... of which feed a quantize (directly or through ReLU) | {norm_to_q} |\n"
        f"| concatenations | {len(cats)} |\n"
        f"| ... whose int8 inputs all share one scale and zero point | {shared} |\n"
        f"| linear layers on int8 weights | "
        f"{sum(target(n.args[1]) == DQ_CHANNEL for n in linears)} of {len(linears)} |\n"
        f"| quantize / dequantize nodes | {ops[Q]} / {ops[DQ] + ops[DQ_CHANNEL]} |\n"
        + (DENSENET_READING if cats else resnet_reading(nodes, len(convs), len(norms)))
    )


def compiled_calls(package: Path) -> str:
    """The library calls of the package's generated C++ wrapper, counted, and what they say."""
    with zipfile.ZipFile(package) as archive:
        wrappers = [name for name in archive.namelist() if name.endswith(".wrapper.cpp")]
        source = "".join(archive.read(name).decode() for name in wrappers)
    calls = Counter(re.findall(r"\baoti_torch_cpu_(\w+)\(", source))
    rows = "".join(f"| `{call}` | {count} |\n" for call, count in calls.most_common())
    fp32_matmuls = sum(count for call, count in calls.items() if re.search(r"addmm|\bmm\b|linear(?!_pointwise)", call))
    return (
        f"\nIn `{package.name}`, the AOTInductor package the build compiled from it, the operator\n"
        f"calls of its generated C++ (everything else is Inductor's own fused C++ kernels):\n\n"
        f"| call | count |\n|---|---|\n{rows}\n"
        f"Reading: {calls['_qconv_pointwise_tensor']} convolutions and {calls['_qlinear_pointwise_tensor']} Linear "
        f"run on oneDNN's int8 kernels, {fp32_matmuls} matrix products in fp32: "
        + ("compiled ahead of time, the program keeps its int8 kernels.\n" if not fp32_matmuls else
           "some of the program's matrix products fell back to fp32 in the package.\n")
    )


def resnet_reading(nodes, convs: int, norms: int) -> str:
    """What the residual additions read and feed, counted, and what that means."""
    adds = [n for n in nodes if target(n) == "aten.add.Tensor"]
    conv_plus_int8 = sum(sorted(map(target, n.args[:2])) == ["aten.conv2d.default", DQ] for n in adds)
    requantized = sum(any(target(v) == Q for u in n.users if target(u) == "aten.relu.default" for v in u.users)
                      for n in adds)
    return (
        f"| residual additions | {len(adds)} |\n"
        f"| ... of a convolution's output and a dequantized int8 shortcut | {conv_plus_int8} |\n"
        f"| ... whose ReLU output is quantized again | {requantized} |\n\n"
        f"Reading: ResNet-50 has no concatenations, and every BatchNorm follows a convolution, so all\n"
        f"of them fold into their convolution's weights ({norms} left in the graph): each of the {convs}\n"
        f"convolutions, with its ReLU, is one int8 kernel. A residual addition adds a convolution's\n"
        f"output to the dequantized int8 shortcut, then ReLU and quantize: the pattern the x86 quantizer\n"
        f"marks for Inductor's int8 convolution with the addition and ReLU fused in (the last block's\n"
        f"output goes to the pooling in floating point instead). Next to DenseNet-121, whose pre-activation\n"
        f"BatchNorms compute in floating point between the int8 kernels, almost nothing here runs\n"
        f"outside an int8 kernel.\n"
    )


DENSENET_READING = (
        f"\nReading: every convolution and the embedding Linear run on int8 weights. The BatchNorm that\n"
        f"follows each dense layer's 1x1 convolution is folded into it; the pre-activation BatchNorms\n"
        f"(`norm1` of each dense layer, the transitions' and `norm5`) cannot be folded, because they act\n"
        f"on the concatenated input before any convolution: they compute in floating point on the\n"
        f"dequantized concatenation and their ReLU output is quantized again for the next convolution,\n"
        f"which Inductor fuses into one pointwise kernel. Concatenations whose inputs share qparams stay\n"
        f"in int8 without requantization; the seed's eager recipe instead concatenated int8 tensors with\n"
        f"different scales (PyTorch warns that this is inaccurate), which is where its fidelity is lost.\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = describe(args.artifact)
    package = args.artifact.with_name("model_compiled.pt2")
    if package.exists():
        text += compiled_calls(package)
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
