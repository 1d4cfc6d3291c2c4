"""Precision and quantization variants: build each one's deployable artifact, load it to run.

Variant types (``type`` in a variant's config):

- ``fp32``: the reference, eager PyTorch.
- ``eager_int8``: the seed's static PTQ recipe, kept faithfully as a baseline: eager mode,
  QuantStub/DeQuantStub around the model, the head's Linear+BatchNorm1d fused,
  ``default_qconfig`` (per-tensor min/max), calibration on a handful of training images.
- ``dynamic_fp16``: the seed's ``quantize_dynamic(model, {Linear}, float16)``; it touches
  only the 512-d head, which is why it changes neither size nor speed.
- ``pt2e_int8``: graph-mode PTQ: ``torch.export`` + torchao PT2E with the x86 Inductor
  quantizer (per-channel symmetric weights, histogram-calibrated activations), compiled by
  Inductor with weights frozen into oneDNN int8 kernels, channels-last.
- ``half``: the whole network in bfloat16 or float16 (weights and activations).
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
from pathlib import Path

import torch
from torch import nn

from reidquant.devices import cpu_has_bf16
from reidquant.errors import ReidQuantError
from reidquant.features import Runner
from reidquant.model import Embedder, build

TYPES = ("fp32", "eager_int8", "dynamic_fp16", "pt2e_int8", "half")
HALF_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
ALIGNMENT = 64  # bytes, as torch.export.save aligns tensor data


def _embedder(opts: dict) -> Embedder:
    return Embedder(build(opts)).eval()


class SeedQuantWrapper(nn.Module):
    """The seed's wrapper: quantize the input, run the model, dequantize the output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.model = model
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.model(self.quant(x)))


def _eager_int8_prepared(embedder: Embedder) -> SeedQuantWrapper:
    wrapped = SeedQuantWrapper(embedder).eval()
    torch.ao.quantization.fuse_modules(wrapped.model.embedding, [["0", "1"]], inplace=True)
    wrapped.qconfig = torch.ao.quantization.default_qconfig
    torch.ao.quantization.prepare(wrapped, inplace=True)
    return wrapped


def _dynamic_fp16(embedder: Embedder) -> nn.Module:
    return torch.ao.quantization.quantize_dynamic(embedder, {nn.Linear}, dtype=torch.float16)


def _layer_of(error: Exception) -> str:
    """The module or graph node a quantization error points at, when the message says."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def calibrate(model: nn.Module, batches, desc: str) -> None:
    from tqdm import tqdm
    with torch.no_grad():
        for batch in tqdm(batches, desc=desc, unit="batch"):
            model(batch)


def build_artifact(name: str, spec: dict, embedder: Embedder, opts: dict, calibration_batches,
                   path: Path) -> dict:
    """Make variant ``name`` from an fp32 embedder and save what it deploys to ``path``."""
    kind = spec["type"]
    start = time.perf_counter()
    try:
        if kind == "fp32":
            torch.save({"type": kind, "opts": opts, "state_dict": embedder.state_dict()}, path)
        elif kind == "half":
            state = {k: v.to(HALF_DTYPES[spec["dtype"]]) if v.is_floating_point() else v
                     for k, v in embedder.state_dict().items()}
            torch.save({"type": kind, "opts": opts, "state_dict": state}, path)
        elif kind == "dynamic_fp16":
            model = _dynamic_fp16(embedder)
            torch.save({"type": kind, "opts": opts, "state_dict": model.state_dict()}, path)
        elif kind == "eager_int8":
            model = _eager_int8_prepared(embedder)
            calibrate(model, calibration_batches, desc=f"calibrate {name}")
            torch.ao.quantization.convert(model, inplace=True)
            torch.save({"type": kind, "opts": opts, "state_dict": model.state_dict()}, path)
        elif kind == "pt2e_int8":
            _save_pt2e_int8(spec, embedder, calibration_batches, path, name)
        else:
            raise ReidQuantError(f"variants.{name}.type: unknown type {kind!r} (one of {', '.join(TYPES)})")
    except ReidQuantError:
        raise
    except Exception as error:
        Path(path).unlink(missing_ok=True)
        raise ReidQuantError(f"variant {name}: quantization failed at {_layer_of(error)}") from error
    return {"variant": name, "type": kind, "size_bytes": Path(path).stat().st_size,
            "quantize_s": time.perf_counter() - start}


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=4096)


def _save_pt2e_int8(spec: dict, embedder: Embedder, calibration_batches, path: Path, name: str) -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    example = calibration_batches[0]
    if len(example) < 2:  # a batch of one would pin the exported batch size to 1
        example = example.repeat(2, 1, 1, 1)
    dynamic = ({0: _batch_dim()},)
    graph = torch.export.export(embedder, (example,), dynamic_shapes=dynamic).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    calibrate(prepared, calibration_batches, desc=f"calibrate {name}")
    converted = convert_pt2e(prepared)
    # The int8 weights are new constants; drop the fp32 originals the graph no longer reads,
    # or the saved program would carry both.
    converted.graph.eliminate_dead_code()
    drop_unread_tensors(converted)
    program = torch.export.export(converted, (example[:2],), dynamic_shapes=dynamic)
    program.example_inputs = None  # not part of the model: don't ship a batch of images with it
    save_program(program, path)


def save_program(program, path: Path) -> None:
    """``torch.export.save`` with the graph's JSON deflated (a DenseNet graph is ~3.5 MB of it).

    Tensors stay uncompressed and 64-byte aligned, as torch writes them: misaligned weights
    load, but Inductor's int8 kernels then run several times slower.
    """
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


def drop_unread_tensors(graph_module: torch.fx.GraphModule) -> None:
    """Delete parameters and buffers that no node of the graph reads."""
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in read:
            owner, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)


def load_runner(path: Path, spec: dict, device: str) -> Runner:
    """Load a variant's artifact for inference on ``device``."""
    kind = spec["type"]
    on_cuda = device == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    if kind == "pt2e_int8":
        return _load_pt2e_int8(path, spec)
    saved = _read_artifact(path, kind)
    embedder = _embedder(saved["opts"])
    channels_last = on_cuda or bool(spec.get("channels_last", kind == "half"))
    if kind == "fp32":
        embedder.load_state_dict(saved["state_dict"])
        model, dtype = embedder, torch.float32
    elif kind == "half":
        dtype = HALF_DTYPES[spec["dtype"]]
        model = embedder.to(dtype)
        model.load_state_dict(saved["state_dict"])
    elif kind == "dynamic_fp16":
        model, dtype = _dynamic_fp16(embedder), torch.float32
        model.load_state_dict(saved["state_dict"])
    elif kind == "eager_int8":
        model, dtype = _eager_int8_prepared(embedder), torch.float32
        torch.ao.quantization.convert(model, inplace=True)
        model.load_state_dict(saved["state_dict"])
    else:
        raise ReidQuantError(f"{path}: unknown variant type {kind!r}")
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if spec.get("compile", False):
        forward = torch.compile(model)
    return Runner(forward, device=device, dtype=dtype, channels_last=channels_last)


def _read_artifact(path: Path, kind: str) -> dict:
    """A ``torch.save`` artifact of this project, checked to hold a variant of type ``kind``."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for a file it cannot read
        raise ReidQuantError(f"{path}: not a {kind} artifact written by quantize ({_layer_of(error)})") from None
    if not isinstance(saved, dict) or "type" not in saved:
        raise ReidQuantError(f"{path}: not a {kind} artifact written by quantize")
    if saved["type"] != kind:
        raise ReidQuantError(f"{path}: holds a {saved['type']} variant, but the spec says type {kind}")
    return saved


def _is_export_archive(path: Path) -> bool:
    """A ``torch.export.save`` archive names its format; a ``torch.save`` file does not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/archive_format") for name in archive.namelist())


def _load_pt2e_int8(path: Path, spec: dict) -> Runner:
    if not _is_export_archive(path):
        raise ReidQuantError(f"{path}: not a pt2e_int8 artifact (a torch.export program written by quantize)")
    # Importing these registers the quantized ops and, with them, Inductor's int8 lowerings
    # (oneDNN qconv/qlinear fusions). Without them the program compiles and runs 4-5x slower.
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
    from torch._inductor import config as inductor_config

    with open(path, "rb") as handle:
        module = torch.export.load(handle).module()
    # int8-mixed-bf16: what is not quantized (the pre-activation BatchNorms, pooling) runs in
    # bfloat16 between the int8 kernels, halving their memory traffic.
    autocast = torch.bfloat16 if spec.get("mixed_bf16", True) and cpu_has_bf16() else None
    if not spec.get("compile", True):
        return Runner(module, channels_last=True, autocast=autocast)
    # Freezing folds the int8 weights into oneDNN's prepacked qconv/qlinear kernels. One
    # compile thread: no pool of compile workers is left starting up while the model is timed.
    inductor_config.freezing = True
    inductor_config.compile_threads = 1
    return Runner(torch.compile(module), channels_last=True, autocast=autocast)
