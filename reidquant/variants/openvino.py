"""``openvino``: the model converted to OpenVINO IR; int8 by NNCF post-training quantization.

``precision`` fp32 (f32 inference), bf16 (bf16 inference, fp16-compressed weights) or int8
(``nncf.quantize`` on training images). The artifact is the IR (``model.xml`` +
``model.bin``); its size is the weights file's. At load, the IR is compiled for the CPU
once per input shape, with the job's thread count.

Its saturation guard is NNCF's ``overflow_fix``: weights on half the 8-bit range, for the first
convolution (``first_layer_only``) or every layer (``enable``), so that products fit the 16-bit
lanes of CPUs without VNNI. ``auto`` is ``first_layer_only`` (NNCF's own default, the best of
the three measured there) where the building CPU lacks VNNI, and ``disable`` where it has VNNI
or AMX, which need no guard (docs/benchmarks/cpu_kinds.md).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from reidquant.devices import cpu_has_bf16, saturates_int8
from reidquant.errors import ReidQuantError
from reidquant.variants.base import guarded, stage

NAME = "openvino"
ARTIFACT = "model.xml"
WEIGHTS = "model.bin"


def calibrated(spec: dict) -> bool:
    return spec["precision"] == "int8"


def unsupported_reason(spec: dict, device: str) -> str | None:
    if device == "cuda":
        return "OpenVINO rows run on its CPU plugin; GPU runtimes are not part of this table yet"
    return None


def hardware_reason(spec: dict, device: str) -> str | None:
    if _inference_precision(spec) == "bf16" and not cpu_has_bf16():
        return "this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated"
    return None


def _inference_precision(spec: dict) -> str:
    """OpenVINO's precision hint. For int8 it is f32: the plugin runs every convolution,
    concatenation and the element-wise work between them on int8 data either way (the
    runtime graph is the same under a bf16 hint; benchmarks/ov_graph.py counts it)."""
    return "bf16" if spec["precision"] == "bf16" else "f32"


GUARD_LABELS = {"disable": "", "first_layer_only": ", 7-bit stem weights", "enable": ", 7-bit weights"}


def resolve(spec: dict, isa: str) -> tuple[dict, dict | None]:
    """The saturation guard for a CPU of int8 instruction set ``isa``."""
    if spec["precision"] != "int8":
        return spec, None
    return guarded(spec, "overflow_fix", isa, auto="first_layer_only" if saturates_int8(isa) else "disable")


def precision(spec: dict) -> str:
    if spec["precision"] != "int8":
        return spec["precision"]
    return "int8 nncf" + GUARD_LABELS.get(spec["overflow_fix"], "")


def runtime(spec: dict) -> str:
    return f"openvino {metadata.version('openvino')}"


def _range_estimator(setting: str):
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if setting == "default":
        return None
    return getattr(RangeEstimatorParametersSet, setting.upper())


def check(spec: dict, where: str) -> None:
    if spec.get("accuracy_control") and spec["precision"] != "int8":
        raise ReidQuantError(f"{where} field accuracy_control: applies to precision int8 only, "
                             f"not {spec['precision']} (nothing is quantized to control)")


def measures_sensitivity(spec: dict) -> bool:
    # An accuracy-controlled build's quantizers come out of NNCF's own search, which ranked the
    # same groups; what is measured here is rebuilt from plain calibration.
    return spec["precision"] == "int8" and spec["sensitivity"] and not spec["accuracy_control"]


def converted(name: str, embedder, example):
    """The embedder as OpenVINO IR, its batch axis dynamic."""
    import openvino as ov

    with stage(name, "conversion to OpenVINO"):
        return ov.convert_model(embedder, example_input=example,
                                input=[ov.PartialShape([-1, 3, example.shape[2], example.shape[3]])])


def build(name, spec, embedder, opts, example, calibration, path, selection=None) -> dict:
    """Writes the IR to ``path``. With ``accuracy_control``, ``selection`` (a
    ``reidquant.selection.SelectionSet``) is what NNCF's accuracy control validates on; the
    layers it left in float and the val drop it reached are returned for ``quantize.json``."""
    import openvino as ov

    from reidquant.sensitivity import weighted_layers

    model = converted(name, embedder, example)
    found = {}
    if spec["precision"] == "int8":
        model = _quantized(name, spec, model, calibration, selection)
        if spec["accuracy_control"]:
            found.update(_controlled(name, spec["accuracy_control"], model, selection, weighted_layers(embedder)))
    with stage(name, "saving the IR"):
        ov.save_model(model, path, compress_to_fp16=spec["precision"] == "bf16")
    return found


def sensitivity(name, spec, folder, embedder, opts, calibration, validation) -> list[dict]:
    """Per convolution and linear layer of the int8 IR built in ``folder``: the val cos_mean
    gained by reverting its quantizer group alone to float (``group_gains``).

    NNCF reverts a group only in its own form of the model, the weights still float behind
    their FakeQuantize, which the deployed IR no longer has (its weights are packed into int8).
    So the quantizers are made again from the same calibration images and settings (NNCF's
    calibration is deterministic), and the result is checked to compute what the deployed IR
    computes before anything is measured."""
    from openvino._offline_transformations import compress_quantize_weights_transformation

    from reidquant.model import reference_name
    from reidquant.selection import cosine_set
    from reidquant.sensitivity import weighted_layers

    float_model = converted(name, embedder, validation[0][:2])
    quantized = _quantized(name, spec, float_model, calibration, pack_weights=False)
    packed = quantized.clone()
    compress_quantize_weights_transformation(packed)
    same_as_deployed(name, packed, Path(folder) / ARTIFACT, validation[0])
    with stage(name, "per-layer sensitivity on val (each quantizer group in float)"):
        return group_gains(name, float_model, quantized, cosine_set(validation, embedder), weighted_layers(embedder),
                           lambda layer: reference_name(layer, opts["arch"]))


def same_as_deployed(name: str, rebuilt, path: Path, images) -> None:
    """Refuse to measure quantizers that do not compute what the IR at ``path`` computes."""
    import numpy as np
    import openvino as ov

    core, config = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
    with stage(name, f"reading the OpenVINO IR {path}"):
        deployed = core.read_model(path)
    ours = core.compile_model(rebuilt, "CPU", config)(images.numpy())[0]
    theirs = core.compile_model(deployed, "CPU", config)(images.numpy())[0]
    cosine = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    if not np.all(cosine > 1 - 1e-6):
        raise ReidQuantError(f"variant {name}: the quantizers made again from its calibration images do not compute "
                             f"what {path} computes (worst cosine {cosine.min():.6f}): it was built from other images, "
                             "settings or an other NNCF; build it again")


def _controlled(name, control: dict, model, selection, layer_names) -> dict:
    """What accuracy control left in float and the val drop it reached; a budget it could not
    meet is said in one line (NNCF keeps the most faithful model it tried, which is built)."""
    import openvino as ov

    from reidquant.selection import budget_record

    validate, _ = _validation(selection)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    value = validate(compiled, range(selection.num_val))[0]
    left = float_layers(model, layer_names)
    return {"float_layers": left,
            "accuracy_control": budget_record(name, control, selection.reference_value, value, len(left),
                                              tried_by="NNCF ")}


def group_gains(name, float_model, quantized, selection, layer_names, reference_name) -> list[dict]:
    """Per convolution and linear layer, in network order: the val cos_mean gained by reverting
    to float the quantizer group it belongs to, alone, as NNCF's accuracy control ranks groups
    (the same groups, the original weights and biases restored).

    This, not a per-layer SQNR, because the CPU plugin's int8 graph cannot be read inside
    without changing it: asking for a convolution's output changes which kernels run.
    """
    import openvino as ov
    import torch
    from nncf.common.factory import build_graph
    from nncf.common.quantization.quantizer_removal import revert_operations_to_floating_point_precision
    from nncf.quantization.advanced_parameters import RestoreMode
    from nncf.quantization.algorithms.accuracy_control.algorithm import QuantizationAccuracyRestorer
    from nncf.quantization.algorithms.accuracy_control.openvino_backend import OVAccuracyControlAlgoBackend
    from nncf.quantization.algorithms.accuracy_control.ranker import Ranker
    from tqdm import tqdm

    from reidquant.sensitivity import part_of

    backend = OVAccuracyControlAlgoBackend()
    graph = build_graph(quantized)
    QuantizationAccuracyRestorer._collect_original_biases_and_weights(build_graph(float_model), graph, float_model,
                                                                      backend)
    groups = Ranker(selection.num_val, None, backend, None).find_groups_of_quantizers_to_rank(graph)
    validate, _ = _validation(selection)
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}

    def value(model) -> float:
        return validate(core.compile_model(model, "CPU", config), range(selection.num_val))[0]

    layers = ir_layers(quantized, layer_names)
    base, gains = value(quantized), {}
    for group in tqdm(groups, desc=f"{name}: each quantizer group in float", unit="group"):
        reverted = revert_operations_to_floating_point_precision(
            group.operations, group.quantizers, quantized, graph, RestoreMode.ACTIVATIONS_AND_WEIGHTS,
            backend.get_op_with_weights_metatypes(), backend.is_node_with_weight, backend.get_weight_tensor_port_ids)
        gain = value(reverted) - base
        for operation in group.operations:
            if operation.node_name in layers:
                gains[layers[operation.node_name][0]] = gain
    return [{"index": index, "layer": layer, "reference_name": reference_name(layer), "part": part_of(layer),
             "op": op, "sqnr_db": None, "cos_mean_gain": gains[layer]}
            for index, (layer, op) in enumerate(layers.values()) if layer in gains]


IR_OPS = {"Convolution": "conv2d", "MatMul": "linear"}


def ir_layers(model, layer_names) -> dict[str, tuple[str, str]]:
    """Each Convolution and MatMul of an IR converted from the embedder, by its friendly name:
    (the embedder's module it came from, op). The PyTorch frontend names a layer's op after its
    module (``__module.features.conv0/aten::...``) but loses the name when it folds a
    BatchNorm into the weights, so the ops are matched to ``layer_names`` in network order,
    checked against every name that survived."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() in IR_OPS]
    if len(ops) != len(layer_names):
        raise ReidQuantError(f"the IR has {len(ops)} convolutions and linear layers but the network "
                             f"{len(layer_names)}: cannot tell which is which")
    found = {}
    for op, layer in zip(ops, layer_names):
        traced = re.match(r"__module\.(.+?)/aten::", op.get_friendly_name())
        if traced and traced.group(1) != layer:
            raise ReidQuantError(f"the IR's {op.get_friendly_name()} comes where the network has {layer}: "
                                 "cannot tell which layer is which")
        found[op.get_friendly_name()] = (layer, IR_OPS[op.get_type_name()])
    return found


def float_layers(model, layer_names) -> list[str]:
    """The convolutions and linear layers (by module name) whose weights are not quantized."""

    def quantized(node, depth=4) -> bool:
        """A FakeQuantize or an 8-bit constant among the weights' producers."""
        if node.get_type_name() == "FakeQuantize" or (
                node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in ("i8", "u8")):
            return True
        return depth > 0 and any(quantized(value.get_node(), depth - 1) for value in node.input_values())

    layers = ir_layers(model, layer_names)
    return [layers[op.get_friendly_name()][0] for op in model.get_ordered_ops()
            if op.get_friendly_name() in layers and not quantized(op.input_value(1).get_node())]


def _quantized(name, spec, model, calibration, selection=None, pack_weights: bool = True):
    import nncf
    from nncf.openvino.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters


    advanced = AdvancedQuantizationParameters(backend_params={BackendParameters.COMPRESS_WEIGHTS: pack_weights},
                                              overflow_fix=nncf.OverflowFix(spec["overflow_fix"]))
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
    common = {
        "preset": nncf.QuantizationPreset(spec["preset"]),
        "subset_size": len(items),  # NNCF counts dataset items, whatever their batch size
        "fast_bias_correction": spec["fast_bias_correction"],
        "ignored_scope": nncf.IgnoredScope(**ignored) if ignored else None,
    }
    control = spec["accuracy_control"]
    if not control:
        with stage(name, "NNCF calibration"):
            return nncf.quantize(model, nncf.Dataset(items), advanced_parameters=advanced, **common)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    validate, validation = _validation(selection)
    restorer = AdvancedAccuracyRestorerParameters()
    if control.get("max_float_layers"):
        restorer.max_num_iterations = control["max_float_layers"]
    with stage(name, f"NNCF calibration with accuracy control ({control['metric']} on val, "
                     f"max_drop {control['max_drop']})"):
        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(items), validation, validate, max_drop=control["max_drop"],
            drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=restorer, **common)


def _validation(selection):
    """NNCF's validation function and dataset over the val images: items are val image indices,
    so that NNCF can rank its quantizers on per-image values (cosine to fp32, or each val
    query's AP against the train gallery, embedded once per candidate model)."""
    import nncf
    import numpy as np
    import torch

    images = torch.cat(selection.val)
    gallery = {}

    def forward(compiled):
        return lambda batch: torch.from_numpy(compiled(batch.numpy())[0])

    def validate(compiled, indices):
        chosen = [int(i) for i in indices]
        features = selection.embed(forward(compiled), images[chosen].split(32))
        if selection.metric == "mAP":
            if gallery.get("model") is not compiled:
                gallery.update(model=compiled, features=selection.embed(forward(compiled), selection.gallery))
            features = np.concatenate([features, gallery["features"]])
        return selection.value(features, chosen)

    return validate, nncf.Dataset(list(range(len(images))), lambda i: images[i:i + 1].numpy())


def load(path, spec, device, name, trust_compiled=False):
    import openvino as ov
    import torch

    from reidquant.features import Runner

    core = ov.Core()
    with stage(name, f"reading the OpenVINO IR {path} (weights {Path(path).with_suffix('.bin')})"):
        model = core.read_model(path)

    def configured(hint: str) -> tuple:
        """A forward with OpenVINO's ``hint``, and that set-up. Latency: one request runs the
        whole batch, compiled for its exact shape (once per shape, at its first call).
        Throughput: the batch split over parallel requests, so the batch axis stays dynamic."""
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": hint.upper(),
                  "INFERENCE_PRECISION_HINT": _inference_precision(spec),
                  **({} if spec["snippets"] else {"SNIPPETS_MODE": "DISABLE"})}
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
