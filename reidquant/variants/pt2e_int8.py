"""``pt2e_int8``: graph-mode PTQ, the best int8 PyTorch itself makes on a CPU.

``torch.export`` + torchao PT2E with the x86 Inductor quantizer (per-channel symmetric
weights, histogram- or min-max-calibrated activations, the network input always by min-max),
compiled by Inductor with the weights frozen into oneDNN int8 kernels, channels-last.

Its saturation guard is the x86 quantizer's ``reduce_range``: 7-bit activations, which
torchao advises on CPUs without VNNI. ``auto`` leaves it off on every CPU: on a CPU without
VNNI it was measured to lose more fidelity than it saved (docs/benchmarks/cpu_kinds.md).
"""

from __future__ import annotations

import io
import struct
import sys
import time
import zipfile
from pathlib import Path

from reidquant.devices import cpu_has_bf16
from reidquant.errors import ReidQuantError
from reidquant.safeload import check_compiled_package, check_export_archive, record_built_here
from reidquant.variants.base import build_record, guarded, stage

NAME = "pt2e_int8"
# The portable quantized program (its weights are the row's size) and, with ``compile``, the
# same program compiled ahead of time for any batch size: what a service loads.
ARTIFACT = WEIGHTS = "model.pt2"
PACKAGE = "model_compiled.pt2"
ALIGNMENT = 64  # bytes, as torch.export.save aligns tensor data
MAX_BATCH = 4096  # the largest batch the exported program accepts


def dynamic_batch() -> tuple:
    import torch

    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)


def ahead_of_time(spec: dict) -> bool:
    """Compiled by the build: every compiled build but int8-mixed-bf16, whose bfloat16 between
    the kernels is an autocast around the compiled program at each call."""
    return spec["compile"] and not spec["mixed_bf16"]


def calibrated(spec: dict) -> bool:
    return True


def unsupported_reason(spec: dict, device: str) -> str | None:
    return "x86 Inductor int8 kernels (oneDNN) run on CPUs only" if device == "cuda" else None


def _mixed_bf16(spec: dict) -> bool:
    return spec["mixed_bf16"] and cpu_has_bf16()


def resolve(spec: dict, isa: str) -> tuple[dict, dict]:
    """The saturation guard for a CPU of int8 instruction set ``isa``."""
    return guarded(spec, "reduce_range", isa, auto=False)


def precision(spec: dict) -> str:
    return ("int8 pt2e per-channel" + (", 7-bit activations" if spec["reduce_range"] is True else "")
            + (" + bf16" if _mixed_bf16(spec) else ""))


def runtime(spec: dict) -> str:
    if ahead_of_time(spec):
        return "torch+aotinductor"
    return "torch+inductor" if spec["compile"] else "torch"


def measures_sensitivity(spec: dict) -> bool:
    return spec["sensitivity"]


def ranked(spec: dict) -> bool:
    """Whether its build needs the per-layer ranking of its fully int8 network."""
    return spec["float_modules"] == "auto"


def check(spec: dict, where: str) -> None:
    auto, control = spec["float_modules"] == "auto", spec.get("accuracy_control")
    if auto and not control:
        raise ReidQuantError(f"{where} field float_modules: auto needs accuracy_control "
                             "{metric, max_drop} to choose the layers by")
    if control and not auto:
        raise ReidQuantError(f"{where} field accuracy_control: applies with float_modules: auto only "
                             "(a list of float_modules is already a choice)")


def build(name, spec, embedder, opts, example, calibration, path, ranking=(), selection=None) -> dict:
    """Writes the quantized program to ``path`` and, with ``compile``, the same program compiled
    ahead of time (``PACKAGE``) beside it.

    With ``float_modules: auto``, the layers left in float are the first of ``ranking`` (the
    layers of this build's fully int8 network, lowest SQNR on val first: its per-layer
    sensitivity), as few as keep ``accuracy_control``'s budget on ``selection`` (a
    ``reidquant.selection.SelectionSet``).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from reidquant.variants.torch_state import calibrate

    with stage(name, "export"):
        graph = torch.export.export(embedder, (example,), dynamic_shapes=dynamic_batch()).module()
        # The float graph with the BatchNorms after convolutions folded as prepare_pt2e folds
        # them (which it does in place): a layer left in float gets exactly these weights.
        float_graph = folded(graph)
        auto = spec["float_modules"] == "auto"
        layers = [] if auto else layers_under(name, spec["float_modules"], float_graph)
        quantizer = X86InductorQuantizer()
        quantizer.set_global(quantization_config(spec["activation_ranges"], spec["reduce_range"]))
        prepared = prepare_pt2e(graph, quantizer)
        observe_input_by_min_max(prepared)
    with stage(name, "calibration"):
        calibrate(prepared, calibration, desc=f"calibrate {name}")
    with stage(name, "conversion"):
        converted = convert(prepared)
        converted.graph.eliminate_dead_code()
    found = {}
    if auto:
        with stage(name, f"choosing the layers left in float ({spec['accuracy_control']['metric']} on val, "
                         f"max_drop {spec['accuracy_control']['max_drop']})"):
            layers, found["accuracy_control"] = choose_float_layers(name, spec["accuracy_control"], converted,
                                                                    float_graph, list(ranking), selection)
    found["float_layers"] = layers
    with stage(name, "export of the quantized program"):
        if layers:
            converted = with_float_layers(converted, float_graph, layers)
        # The int8 weights are new constants; drop the fp32 originals the graph no longer
        # reads, or the saved program would carry both.
        drop_unread_tensors(converted)
        program = torch.export.export(converted, (example[:2],), dynamic_shapes=dynamic_batch())
    if ahead_of_time(spec):  # AOTInductor traces the example input, so before it is dropped
        found.update(compile_package(name, program, Path(path).parent / PACKAGE))
    program.example_inputs = None  # not part of the model: don't ship an input with it
    save_program(program, path)
    return found


def convert(prepared):
    """``convert_pt2e``, without torchao's conv-BatchNorm folding for quantization-aware training
    where no BatchNorm follows a convolution.

    Written for torchao 0.18.0, whose ``convert_pt2e`` runs ``_fold_conv_bn_qat`` on any graph
    holding a BatchNorm, exporting dozens of pattern graphs to match. In a post-training graph
    ``prepare_pt2e`` has already folded every BatchNorm that follows a convolution; DenseNet's
    pre-activation BatchNorms, which remain, match none of the patterns. Skipping it leaves the
    same graph and saves most of the conversion's time (docs/benchmarks.md).
    """
    from unittest import mock

    from torchao.quantization.pt2e import quantize_pt2e
    from torchao.quantization.pt2e.utils import _is_bn_node

    def follows_convolution(node) -> bool:
        source = node.args[0]
        while getattr(source, "op", None) == "call_function" and "quantize" in str(source.target):
            source = source.args[0]
        return getattr(source, "op", None) == "call_function" and "conv" in str(source.target)

    if any(_is_bn_node(node) and follows_convolution(node) for node in prepared.graph.nodes):
        return quantize_pt2e.convert_pt2e(prepared)
    with mock.patch.object(quantize_pt2e, "_fold_conv_bn_qat", lambda graph_module: graph_module):
        return quantize_pt2e.convert_pt2e(prepared)


# For this many of the most sensitive layers, sensitivity.csv says what leaving each one alone
# in float gains: one val pass of the quantized network each.
GAIN_LAYERS = 5


def layers_under(name: str, modules, float_graph) -> list[str]:
    """The convolutions and linear layers inside each of ``modules`` (module names in the
    embedder; a layer names itself), in network order."""
    from reidquant.sensitivity import weighted_nodes

    layers = list(weighted_nodes(float_graph))
    chosen = []
    for module in modules:
        inside = [layer for layer in layers if layer == module or layer.startswith(module + ".")]
        if not inside:
            raise ReidQuantError(f"variant {name} field float_modules: {module!r} is not a convolution or "
                                 f"linear layer of the network, nor a module holding one (e.g. {layers[0]}, "
                                 f"{layers[-1]})")
        chosen += [layer for layer in inside if layer not in chosen]
    return [layer for layer in layers if layer in chosen]


def with_float_layers(converted, float_graph, layers):
    """A copy of a converted PT2E graph in which each of ``layers`` (convolutions or linear
    layers by name) reads its input and its weights in floating point, as before quantization
    (BatchNorms folded): its input's quantize/dequantize pair is bypassed and its int8 weights
    replaced. Every other layer stays as calibrated, so one calibration serves every choice."""
    import copy
    import operator

    from reidquant.sensitivity import weighted_nodes

    model = copy.deepcopy(converted)
    nodes, float_nodes = weighted_nodes(model), weighted_nodes(float_graph)
    for index, layer in enumerate(layers):
        node = nodes[layer]
        value = node.args[0]
        if "dequantize" in str(value.target) and "quantize" in str(getattr(value.args[0], "target", "")):
            value = value.args[0].args[0]
        weight = operator.attrgetter(float_nodes[layer].args[1].target)(float_graph)
        attribute = f"_float_weight_{index}"
        model.register_buffer(attribute, weight.detach().clone())
        with model.graph.inserting_before(node):
            weight_node = model.graph.get_attr(attribute)
        node.args = (value, weight_node, *node.args[2:])
    model.graph.eliminate_dead_code()
    model.recompile()
    return model


def sensitivity(name, spec, folder, embedder, opts, calibration, validation) -> list[dict]:
    """Per quantized layer of the program built in ``folder``, in network order: the SQNR of
    its output against the float network's on the ``validation`` batches, and for the
    ``GAIN_LAYERS`` lowest, the val cos_mean gained by leaving that layer alone in float."""
    import torch
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - registers the quantized ops it reads

    from reidquant.model import reference_name
    from reidquant.selection import cosine_set
    from reidquant.sensitivity import layer_sqnr

    path = Path(folder) / ARTIFACT
    check_export_archive(path)
    with stage(name, f"reading the torch.export program {path}"), open(path, "rb") as handle:
        quantized = torch.export.load(handle).module()
    with stage(name, "export of the float network"):
        example = validation[0][:2]
        float_graph = folded(torch.export.export(embedder, (example,), dynamic_shapes=dynamic_batch()).module())
    with stage(name, "per-layer SQNR on val"):
        rows = layer_sqnr(float_graph, quantized, validation, lambda layer: reference_name(layer, opts["arch"]))
    with stage(name, "each of the lowest-SQNR layers alone in float"):
        add_float_gains(rows, quantized, float_graph, cosine_set(validation, embedder), desc=name)
    return rows


def val_value(model, selection) -> float:
    return selection.value(selection.embed(model, selection.val + selection.gallery))[0]


def add_float_gains(rows: list[dict], converted, float_graph, selection, desc: str) -> None:
    """``cos_mean_gain`` of the ``GAIN_LAYERS`` lowest-SQNR rows: the val cos_mean with that
    layer alone in float, less the fully quantized network's."""
    from tqdm import tqdm

    from reidquant.sensitivity import most_sensitive

    base = val_value(converted, selection)
    for row in tqdm(most_sensitive(rows, GAIN_LAYERS), desc=f"{desc}: one layer in float", unit="layer"):
        row["cos_mean_gain"] = val_value(with_float_layers(converted, float_graph, [row["layer"]]), selection) - base


def choose_float_layers(name, control: dict, converted, float_graph, ranked: list[str], selection
                        ) -> tuple[list, dict]:
    """The fewest of the ``ranked`` layers (most sensitive first) left in float that keep the val
    drop within ``control['max_drop']``: counts tried by doubling, then halving the gap. A budget
    that ``max_float_layers`` cannot meet is said in one line and the most faithful count tried
    is built."""
    import sys

    from reidquant.selection import budget_record, meets_max_drop

    limit = min(control.get("max_float_layers") or len(ranked), len(ranked))
    values, tried = {}, {}  # count of layers in float -> its val value, and its drop

    def drop(count: int) -> float:
        if count not in tried:
            model = with_float_layers(converted, float_graph, ranked[:count]) if count else converted
            values[count] = val_value(model, selection)
            tried[count] = selection.reference_value - values[count]
            print(f"variant {name}: {count} layer(s) in float: {control['metric']} drop {tried[count]:.6g}",
                  file=sys.stderr)
        return tried[count]

    def within(count: int) -> bool:
        return meets_max_drop(drop(count), control)

    low, high = 0, 1  # low: a count over budget (or 0 untried); high: the next count to try
    if within(0):
        count = 0
    else:
        while high < limit and not within(high):
            low, high = high, min(2 * high, limit)
        if within(high):
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if within(middle) else (middle, high)
            count = high
        else:
            count = min(tried, key=lambda k: (tried[k], k))
    record = budget_record(name, control, selection.reference_value, values[count], count,
                           limit_note=f" (max_float_layers {limit})")
    return ranked[:count], {**record, "tried": {str(k): v for k, v in sorted(tried.items())}}


def folded(graph):
    """A copy of an exported graph with each convolution's and linear layer's following
    BatchNorm folded into its weights, as ``prepare_pt2e`` folds them."""
    import copy

    from torchao.quantization.pt2e.utils import _fuse_conv_bn_, _fuse_linear_bn_

    graph = copy.deepcopy(graph)
    _fuse_conv_bn_(graph)
    _fuse_linear_bn_(graph)
    return graph


def quantization_config(activation_ranges: str, reduce_range: bool = False):
    """The x86 Inductor quantizer's default config, its activations' ranges by histogram
    (the range that minimises the quantization error, clipping rare large values) or min-max,
    on 7 bits with ``reduce_range``."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
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


def load(path, spec, device, name, trust_compiled=False):
    if not is_export_archive(path):
        raise ReidQuantError(f"{path}: not a pt2e_int8 artifact (a torch.export program written by quantize)")
    check_export_archive(path)
    import torch
    # Importing these registers the quantized ops and, with them, Inductor's int8 lowerings
    # (oneDNN qconv/qlinear fusions). Without them the program compiles and runs 4-5x slower.
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    from reidquant.features import Runner

    options = inductor_options()
    if ahead_of_time(spec):
        record = build_record(Path(path).parent)
        unusable = package_unusable(record)
        if unusable is None:
            return Runner(compiled_package(name, Path(path).parent / PACKAGE, record["package_sha256"], trust_compiled),
                          config={"runtime": "torch+aotinductor", "compiled_for": "a dynamic batch, by the build",
                                  "vec_isa": record["vec_isa"], "compiled_for_threads": record["compiled_for_threads"]})
        print(f"warning: variant {name}: {unusable}; compiling its portable program here instead", file=sys.stderr)
    with stage(name, f"reading the torch.export program {path}"), open(path, "rb") as handle:
        module = torch.export.load(handle).module()
    # int8-mixed-bf16: what is not quantized (the pre-activation BatchNorms, pooling) runs in
    # bfloat16 between the int8 kernels, halving their memory traffic.
    autocast = torch.bfloat16 if _mixed_bf16(spec) else None
    forward = compiled(module, options) if spec["compile"] else module
    config = {"runtime": "torch+inductor", "compiled_for": "each batch size", "inductor": options} \
        if spec["compile"] else {"runtime": "torch", "compile": False}
    runtime_label = "torch+inductor" if spec["compile"] else "torch"
    return Runner(forward, channels_last=True, autocast=autocast, config=config, runtime=runtime_label)


def compile_package(name: str, program, package: Path) -> dict:
    """``program`` compiled ahead of time by AOTInductor into ``package``, its weights frozen into
    oneDNN's prepacked int8 kernels, for any batch size up to ``MAX_BATCH``; what the build
    records of it.

    Compiled for every core of this machine, as the extraction runs, not for the one thread a
    build runs on: Inductor writes a kernel's parallel loops only where it compiles for several
    threads (how many is the caller's choice at run time). One package for a dynamic batch
    runs as fast as one compiled for each batch size (docs/benchmarks.md)."""
    import torch
    from torch._inductor import aoti_compile_and_package

    from reidquant.devices import available_cores

    options = {**inductor_options(), "cpp.threads": available_cores()}
    start = time.perf_counter()
    with stage(name, "ahead-of-time compilation (AOTInductor)"), torch.no_grad():
        aoti_compile_and_package(program, package_path=str(package), inductor_configs=options)
    return {"compile_s": time.perf_counter() - start, "package_bytes": package.stat().st_size,
            "deploy": {"package": PACKAGE, "package_sha256": record_built_here(package),
                       "vec_isa": vec_isa(), "compiled_for_threads": options["cpp.threads"]}}


def vec_isa() -> str:
    """The vector instruction set Inductor compiles C++ kernels for on this CPU."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return type(pick_vec_isa()).__name__


def package_unusable(record: dict) -> str | None:
    """Why the build's compiled package cannot run on this CPU (its kernels use vector
    instructions this CPU lacks), or None."""
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    if not record.get("package"):
        return "its build compiled no package"
    here = [type(isa).__name__ for isa in valid_vec_isa_list()]
    if record["vec_isa"] not in here and record["vec_isa"] != "InvalidVecISA":
        return (f"its compiled package uses {record['vec_isa']} instructions, which this CPU lacks "
                f"(it has {', '.join(here) or 'none of them'})")
    return None


def compiled_package(name: str, package: Path, sha256: str, trust_compiled: bool = False):
    """The build's compiled package, loaded: checked to be the one the build recorded, to hold
    nothing unpickled, and to have been compiled on this machine (or ``trust_compiled``), then
    fed the contiguous batches it was compiled for (it reads other strides as if they were
    those, and computes nonsense)."""
    import torch
    from torch._inductor import aoti_load_package

    check_compiled_package(package, sha256, trust_compiled)
    with stage(name, f"loading the compiled package {package}"):
        model = aoti_load_package(str(package))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.contiguous())

    return forward


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
