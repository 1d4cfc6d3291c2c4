"""``openvino``: the model converted to OpenVINO IR; int8 by NNCF post-training quantization.

``precision`` fp32 (f32 inference), bf16 (bf16 inference, fp16-compressed weights) or int8
(``nncf.quantize`` on training images). The artifact is the IR (``model.xml`` +
``model.bin``); its size is the weights file's. At load, the IR is compiled for the CPU
once per input shape, with the job's thread count.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from reidquant.devices import cpu_has_bf16

NAME = "openvino"
ARTIFACT = "model.xml"
WEIGHTS = "model.bin"


def calibrated(spec: dict) -> bool:
    return spec["precision"] == "int8"


def unsupported_reason(spec: dict, device: str) -> str | None:
    if device == "cuda":
        return "OpenVINO rows run on its CPU plugin; GPU runtimes are not part of this table yet"
    if _inference_precision(spec) == "bf16" and not cpu_has_bf16():
        return "this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated"
    return None


def _inference_precision(spec: dict) -> str:
    """OpenVINO's precision hint. For int8 it is f32: the plugin runs every convolution,
    concatenation and the element-wise work between them on int8 data either way (the
    runtime graph is the same under a bf16 hint; benchmarks/ov_graph.py counts it)."""
    return "bf16" if spec["precision"] == "bf16" else "f32"


def precision(spec: dict) -> str:
    return "int8 nncf" if spec["precision"] == "int8" else spec["precision"]


def runtime(spec: dict) -> str:
    return f"openvino {metadata.version('openvino')}"


def _range_estimator(setting: str):
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if setting == "default":
        return None
    return getattr(RangeEstimatorParametersSet, setting.upper())


def build(name, spec, embedder, opts, example, calibration, path) -> None:
    import openvino as ov

    from reidquant.variants import stage

    with stage(name, "conversion to OpenVINO"):
        model = ov.convert_model(embedder, example_input=example,
                                 input=[ov.PartialShape([-1, 3, example.shape[2], example.shape[3]])])
    if spec["precision"] == "int8":
        model = _quantized(name, spec, model, calibration)
    with stage(name, "saving the IR"):
        ov.save_model(model, path, compress_to_fp16=spec["precision"] == "bf16")


def _quantized(name, spec, model, calibration):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from reidquant.variants import stage

    advanced = AdvancedQuantizationParameters()
    estimator = _range_estimator(spec["range_estimator"])
    if estimator is not None:
        advanced.activations_range_estimator_params = estimator
    ignored = spec["ignored_scope"]
    # Global min-max ranges are the same whatever the batching, so whole batches go through at
    # once; the other estimators reduce per sample (NNCF's default averages per-sample minima
    # and maxima) and get one image per item, as NNCF assumes.
    if spec["range_estimator"] == "minmax":
        items = [batch.numpy() for batch in calibration]
    else:
        items = [image[None].numpy() for batch in calibration for image in batch]
    with stage(name, "NNCF calibration"):
        return nncf.quantize(
            model,
            nncf.Dataset(items),
            preset=nncf.QuantizationPreset(spec["preset"]),
            subset_size=len(items),  # NNCF counts dataset items, whatever their batch size
            fast_bias_correction=spec["fast_bias_correction"],
            ignored_scope=nncf.IgnoredScope(**ignored) if ignored else None,
            advanced_parameters=advanced,
        )


def load(path, spec, device, name):
    import openvino as ov
    import torch

    from reidquant.features import Runner
    from reidquant.variants import stage

    core = ov.Core()
    with stage(name, f"reading the OpenVINO IR {path} (weights {Path(path).with_suffix('.bin')})"):
        model = core.read_model(path)

    def configured(hint: str) -> tuple:
        """A forward with OpenVINO's ``hint``, and that set-up. Latency: one request runs the
        whole batch, compiled for its exact shape (once per shape, at its first call).
        Throughput: the batch split over parallel requests, so the batch axis stays dynamic."""
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": hint.upper(),
                  "INFERENCE_PRECISION_HINT": _inference_precision(spec)}
        compiled = {}

        def forward(batch: torch.Tensor) -> torch.Tensor:
            shape = (len(batch) if hint == "latency" else -1, *batch.shape[1:])
            if shape not in compiled:
                with stage(name, f"OpenVINO compilation of {path} for shape {list(shape)}"):
                    shaped = model.clone()
                    shaped.reshape(list(shape))
                    compiled[shape] = _Compiled(core.compile_model(shaped, "CPU", config))
            return compiled[shape](batch.numpy())

        return forward, {"runtime": "openvino", **config,
                         "compiled_for": "each batch size" if hint == "latency" else "a dynamic batch"}

    forward, config = configured(spec["performance_hint"])
    # Small batches, one call at a time, are what the LATENCY hint is for: a deployer embedding
    # the crops of one frame sets it, whatever the variant uses for throughput.
    latency_forward, latency_config = (forward, config) if spec["performance_hint"] == "latency" \
        else configured("latency")
    return Runner(forward, config=config, latency_forward=latency_forward, latency_config=latency_config)


class _Compiled:
    """A compiled model run on one batch: one request for the latency hint; for the
    throughput hint, the batch split over the runtime's optimal number of parallel requests."""

    def __init__(self, compiled):
        import openvino as ov

        self.requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self.single = compiled.create_infer_request()
        self.queue = ov.AsyncInferQueue(compiled, self.requests) if self.requests > 1 else None

    def __call__(self, images):
        import numpy as np
        import torch

        if self.queue is None:
            return torch.from_numpy(self.single.infer({0: images})[0].copy())
        chunks = np.array_split(images, self.requests)
        outputs = [None] * len(chunks)

        def done(request, index):
            outputs[index] = request.get_output_tensor(0).data.copy()

        self.queue.set_callback(done)
        for index, chunk in enumerate(chunks):
            self.queue.start_async({0: chunk}, index)
        self.queue.wait_all()
        return torch.from_numpy(np.concatenate(outputs))
