"""``pt2e_int8``: graph-mode PTQ, the best int8 PyTorch itself makes on a CPU.

``torch.export`` + torchao PT2E with the x86 Inductor quantizer (per-channel symmetric
weights, histogram- or min-max-calibrated activations, the network input always by min-max),
compiled by Inductor with the weights frozen into oneDNN int8 kernels, channels-last.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from reidquant.devices import cpu_has_bf16
from reidquant.errors import ReidQuantError
from reidquant.safeload import check_export_archive

NAME = "pt2e_int8"
ARTIFACT = WEIGHTS = "model.pt2"
ALIGNMENT = 64  # bytes, as torch.export.save aligns tensor data


def calibrated(spec: dict) -> bool:
    return True


def unsupported_reason(spec: dict, device: str) -> str | None:
    return "x86 Inductor int8 kernels (oneDNN) run on CPUs only" if device == "cuda" else None


def _mixed_bf16(spec: dict) -> bool:
    return spec["mixed_bf16"] and cpu_has_bf16()


def precision(spec: dict) -> str:
    return "int8 pt2e per-channel" + (" + bf16" if _mixed_bf16(spec) else "")


def runtime(spec: dict) -> str:
    return "torch+inductor" if spec["compile"] else "torch"


def reports_sensitivity(spec: dict) -> bool:
    return True


def build(name, spec, embedder, opts, example, calibration, path, validation=()) -> dict:
    """Writes the quantized program to ``path``; with ``validation`` batches, returns each
    quantized layer's SQNR on them (``sensitivity``), by torchao's numeric debugger."""
    import torch
    from torchao.quantization.pt2e._numeric_debugger import prepare_for_propagation_comparison
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from reidquant.model import reference_name
    from reidquant.sensitivity import layer_sqnr
    from reidquant.variants import stage
    from reidquant.variants.torch_state import calibrate

    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with stage(name, "export"):
        graph = torch.export.export(embedder, (example,), dynamic_shapes=dynamic).module()
        # The float graph with loggers, made before quantization prepares the graph in place,
        # with the BatchNorms after convolutions folded as prepare_pt2e folds them: a layer's
        # output is then the same tensor in both graphs.
        reference = prepare_for_propagation_comparison(folded(graph)) if validation else None
        quantizer = X86InductorQuantizer()
        quantizer.set_global(quantization_config(spec["activation_ranges"]))
        for module in spec["float_modules"]:
            quantizer.set_module_name_qconfig(module, None)
        prepared = prepare_pt2e(graph, quantizer)
        observe_input_by_min_max(prepared)
    with stage(name, "calibration"):
        calibrate(prepared, calibration, desc=f"calibrate {name}")
    with stage(name, "conversion"):
        converted = convert_pt2e(prepared)
        # The int8 weights are new constants; drop the fp32 originals the graph no longer
        # reads, or the saved program would carry both.
        converted.graph.eliminate_dead_code()
        drop_unread_tensors(converted)
        program = torch.export.export(converted, (example[:2],), dynamic_shapes=dynamic)
    program.example_inputs = None  # not part of the model: don't ship a batch of images with it
    save_program(program, path)
    if not validation:
        return {}
    with stage(name, "per-layer sensitivity on val"):
        return {"sensitivity": layer_sqnr(reference, converted, validation,
                                          lambda layer: reference_name(layer, opts["arch"]))}


def folded(graph):
    """A copy of an exported graph with each convolution's and linear layer's following
    BatchNorm folded into its weights, as ``prepare_pt2e`` folds them."""
    import copy

    from torchao.quantization.pt2e.utils import _fuse_conv_bn_, _fuse_linear_bn_

    graph = copy.deepcopy(graph)
    _fuse_conv_bn_(graph)
    _fuse_linear_bn_(graph)
    return graph


def quantization_config(activation_ranges: str):
    """The x86 Inductor quantizer's default config, its activations' ranges by histogram
    (the range that minimises the quantization error, clipping rare large values) or min-max."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config()
    if activation_ranges == "histogram":
        return config
    activation = dataclasses.replace(config.input_activation,
                                     observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=activation, output_activation=activation)


def observe_input_by_min_max(prepared) -> None:
    """Range the network's input by min-max, whatever the other activations use.

    The input is 8-bit pixels, normalised: 256 levels over its full range lose almost
    nothing, while a histogram's range saturates an image's brightest and darkest pixels,
    which costs the worst images most (measured on fp32-trained weights without BF16:
    worst cosine to fp32 0.9949 with the input by histogram, 0.9956 by min-max).
    """
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.observer import ObserverBase

    (image,) = [node for node in prepared.graph.nodes if node.op == "placeholder"]
    for user in image.users:
        observer = prepared.get_submodule(user.target) if user.op == "call_module" else None
        if isinstance(observer, ObserverBase) and not isinstance(observer, MinMaxObserver):
            setattr(prepared, user.target, MinMaxObserver(
                dtype=observer.dtype, qscheme=observer.qscheme, quant_min=observer.quant_min,
                quant_max=observer.quant_max, eps=float(observer.eps)))


def save_program(program, path: Path) -> None:
    """``torch.export.save`` with the graph's JSON deflated (a DenseNet graph is ~3.5 MB of it).

    Tensors stay uncompressed and 64-byte aligned, as torch writes them: misaligned weights
    load, but Inductor's int8 kernels then run several times slower.
    """
    import torch

    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=entry.date_time)
            if entry.filename.endswith(".json"):
                info.compress_type = zipfile.ZIP_DEFLATED
            else:
                data_start = target.fp.tell() + 30 + len(entry.filename.encode()) + 4
                padding = -data_start % ALIGNMENT
                info.extra = struct.pack("<HH", 0x4246, padding) + b"Z" * padding
            target.writestr(info, source.read(entry.filename))


def drop_unread_tensors(graph_module) -> None:
    """Delete parameters and buffers that no node of the graph reads."""
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in read:
            owner, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)


def is_export_archive(path: Path) -> bool:
    """A ``torch.export.save`` archive names its format; a ``torch.save`` file does not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/archive_format") for name in archive.namelist())


def load(path, spec, device, name):
    if not is_export_archive(path):
        raise ReidQuantError(f"{path}: not a pt2e_int8 artifact (a torch.export program written by quantize)")
    check_export_archive(path)
    import torch
    # Importing these registers the quantized ops and, with them, Inductor's int8 lowerings
    # (oneDNN qconv/qlinear fusions). Without them the program compiles and runs 4-5x slower.
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    from reidquant.features import Runner
    from reidquant.variants import stage

    with stage(name, f"reading the torch.export program {path}"), open(path, "rb") as handle:
        module = torch.export.load(handle).module()
    # int8-mixed-bf16: what is not quantized (the pre-activation BatchNorms, pooling) runs in
    # bfloat16 between the int8 kernels, halving their memory traffic.
    autocast = torch.bfloat16 if _mixed_bf16(spec) else None
    options = inductor_options()
    forward = compiled(module, options) if spec["compile"] else module
    config = {"runtime": "torch+inductor", "compiled_for": "each batch size", "inductor": options} \
        if spec["compile"] else {"runtime": "torch", "compile": False}
    return Runner(forward, channels_last=True, autocast=autocast, config=config)


def inductor_options() -> dict:
    """Freezing folds the int8 weights into oneDNN's prepacked qconv/qlinear kernels. The
    kernels compile in parallel on the job's threads (a cold compile took 44 s instead of
    59 s on 2 cores); the compile workers are idle once the first call returns, before any
    timing starts."""
    import torch

    return {"freezing": True, "compile_threads": torch.get_num_threads()}


def compiled(module, options: dict, dynamic: bool | None = False):
    """``torch.compile(module)`` run with Inductor ``options`` set around each of its calls
    only (compilation happens at a call), so no other model in the process inherits them.

    Not ``torch.compile(options=...)``: freezing is also read while the graph is captured,
    before those options apply, and without it the int8 weight prepacking fails to compile.

    Compiled for each batch size it is called with (``dynamic=False``), as a deployer
    compiles for the shapes they serve. The graph with a symbolic batch that torch.compile
    makes by itself once a second shape arrives (``dynamic=None``, its default) saves one
    compile of three but runs slower at every call (a third slower at batch 8), and batch 1
    is compiled apart either way (``docs/benchmarks/batch_shapes.md``).
    """
    import torch
    from torch._inductor import config as inductor_config

    compiled_module = torch.compile(module, dynamic=dynamic)

    def forward(x):
        with inductor_config.patch(options):
            return compiled_module(x)

    return forward
