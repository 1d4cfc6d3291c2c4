"""``onnxruntime``: the model exported to ONNX and run by ONNX Runtime's CPU provider.

``precision`` fp32, or int8 by ``quantize_static``: by default QDQ format, uint8
activations, int8 weights per channel, calibrated on training images (``quant_format``,
``activation_type``, ``per_channel`` choose otherwise). The artifact is the ``.onnx`` file
(weights inside). The export has a dynamic batch axis.

Its saturation guard is ``reduce_range``: 7-bit weights, so that a u8 x s8 product pair fits
the 16-bit lanes of CPUs without VNNI. ``auto`` turns it on where the building CPU lacks VNNI,
where it was measured to help, and off elsewhere, where it only costs precision
(docs/benchmarks/cpu_kinds.md).
"""

from __future__ import annotations

from reidquant.devices import saturates_int8
from reidquant.variants.base import guarded, stage

import tempfile
from importlib import metadata
from pathlib import Path

NAME = "onnxruntime"
ARTIFACT = WEIGHTS = "model.onnx"
INPUT = "images"
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def calibrated(spec: dict) -> bool:
    return spec["precision"] == "int8"


def unsupported_reason(spec: dict, device: str) -> str | None:
    if device == "cuda":
        return "ONNX Runtime rows run on its CPU provider; GPU runtimes are not part of this table yet"
    return None


def resolve(spec: dict, isa: str) -> tuple[dict, dict | None]:
    """The saturation guard for a CPU of int8 instruction set ``isa``."""
    if spec["precision"] != "int8":
        return spec, None
    return guarded(spec, "reduce_range", isa, auto=saturates_int8(isa))


def precision(spec: dict) -> str:
    if spec["precision"] != "int8":
        return "fp32"
    return (f"int8 {spec['quant_format']} {'per-channel' if spec['per_channel'] else 'per-tensor'}"
            + (", s8 activations" if spec["activation_type"] == "int8" else "")
            + (", 7-bit weights" if spec["reduce_range"] is True else ""))


def runtime(spec: dict) -> str:
    return f"onnxruntime {metadata.version('onnxruntime')}"


def export(embedder, example, path: Path) -> None:
    import torch

    torch.onnx.export(embedder, (example,), str(path), input_names=[INPUT], output_names=["embedding"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                      verbose=False)


class _CalibrationReader:
    """ONNX Runtime's calibration interface over our calibration batches."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT: batch.numpy()}


def build(name, spec, embedder, opts, example, calibration, path) -> None:

    if spec["precision"] == "fp32":
        with stage(name, "export to ONNX"):
            export(embedder, example, path)
        return
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reidquant.variants.torch_state import progress

    with tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
        exported, prepared = Path(scratch) / "exported.onnx", Path(scratch) / "prepared.onnx"
        with stage(name, "export to ONNX"):
            export(embedder, example, exported)
        with stage(name, "ONNX preprocessing"):
            # Shape inference and graph optimisation before quantization, as ONNX Runtime advises.
            quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
        with stage(name, "ONNX Runtime calibration"):
            quantize_static(
                str(prepared), str(path),
                _CalibrationReader(progress(calibration, f"calibrate {name}")),
                quant_format=QuantFormat.QDQ if spec["quant_format"] == "qdq" else QuantFormat.QOperator,
                activation_type=QuantType.QUInt8 if spec["activation_type"] == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=spec["per_channel"],
                reduce_range=spec["reduce_range"],
                calibrate_method=getattr(CalibrationMethod, spec["calibrate_method"]),
            )


def load(path, spec, device, name, trust_compiled=False):
    import onnxruntime as ort
    import torch

    from reidquant.features import Runner

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               OPTIMIZATION_LEVELS[spec["graph_optimization"]])
    # Spinning threads keep the cores busy after a call returns and slow whatever runs next, the
    # eager fp32 it is timed beside included (docs/benchmarks.md, "a runtime that spins").
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spec["allow_spinning"] else "0")
    with stage(name, f"ONNX Runtime session creation from {path}"):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {INPUT: batch.numpy()})[0])

    config = {"runtime": "onnxruntime", "intra_op_num_threads": options.intra_op_num_threads,
              "inter_op_num_threads": options.inter_op_num_threads,
              "graph_optimization_level": spec["graph_optimization"], "allow_spinning": spec["allow_spinning"],
              "providers": session.get_providers()}
    return Runner(forward, config=config)
