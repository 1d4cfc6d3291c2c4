import json
import os
import zipfile

import pytest
import torch
from torch import nn

from conftest import run_cli, synthetic_prepared
from reidquant.errors import ReidQuantError
from reidquant.features import Runner
from reidquant.market import list_prepared
from reidquant.model import Embedder, load_checkpoint, save_untrained
from reidquant.pipeline import (
    ExtractSettings,
    calibration_batches,
    calibration_paths,
    extract_features,
    layer_sensitivity,
    quantize,
)
from reidquant.sensitivity import read_csv, weighted_layers
from reidquant.variants import TYPES, complete, load_runner, unsupported_reason

# Input sizes: small, and for ResNet-50 wide enough that layer4's stride-2 3x3 convolution gets
# a map at least 3 wide: oneDNN's AMX bfloat16 kernel for it reads memory it never wrote on
# 1- and 2-wide maps, giving garbage or NaN (a 64x32 input's 4x2 map; see docs/benchmarks.md).
SIZES = {"ft_net_dense": (64, 32), "ft_net": (96, 64)}
H, W = SIZES["ft_net_dense"]
SPECS = {name: complete(spec) for name, spec in {
    "fp32": {"type": "fp32"},
    "int8_seed": {"type": "eager_int8", "calibration_images": 8},
    "fp16_dynamic_seed": {"type": "dynamic_fp16"},
    "int8": {"type": "pt2e_int8", "calibration_images": 8},  # compiled ahead of time, as it ships
    "bf16": {"type": "half", "dtype": "bfloat16", "channels_last": True},
    "ov_fp32": {"type": "openvino", "precision": "fp32"},
    "ov_int8": {"type": "openvino", "precision": "int8", "calibration_images": 8},
    "ov_fp32_throughput": {"type": "openvino", "precision": "fp32", "performance_hint": "throughput"},
    "ort_fp32": {"type": "onnxruntime", "precision": "fp32"},
    "ort_int8": {"type": "onnxruntime", "precision": "int8", "calibration_images": 8},
}.items()}
# ResNet-50's int8 runs its program as saved: compiling ahead of time is the same code for both
# networks, and its minute is spent once, on DenseNet-121.
ON_ARCH = {("ft_net", "int8"): {"compile": False}}


def record_of(folder) -> str:
    """Where the CLI looks for an artifact folder's build record by default."""
    return f"{folder}.quantize.json"


def spec_of(arch: str, name: str) -> dict:
    return complete({**SPECS[name], **ON_ARCH.get((arch, name), {})})


SIZE_LIMITS = {"int8_seed": 0.35, "int8": 0.35, "ov_int8": 0.35, "ort_int8": 0.35, "bf16": 0.55}
MIN_COSINE = {"fp32": 0.99999, "ov_fp32": 0.9999, "ov_fp32_throughput": 0.9999, "ort_fp32": 0.9999,
              "fp16_dynamic_seed": 0.999, "bf16": 0.99}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    synthetic_prepared(root, train_ids=4, test_ids=3, images_per_camera=2, cameras_per_id=2, distractors=2, junk=1,
                       multi_query_per_query=0)
    save_untrained(root / "weights", seed=0, nclasses=4)
    save_untrained(root / "ft_net" / "weights", seed=0, nclasses=4, arch="ft_net")
    return root


ARCHS = {"ft_net_dense": "", "ft_net": "ft_net"}  # architecture -> its folder in the workspace
# Every type on ResNet-50, each runtime's fp32 on DenseNet-121 only: the same conversion and
# loading code, which the suite's time pays once.
ON_BOTH = [name for name in SPECS if name not in ("fp16_dynamic_seed", "ov_fp32", "ov_fp32_throughput", "ort_fp32")]
BUILDS = [(arch, name) for arch in ARCHS for name in SPECS if arch == "ft_net_dense" or name in ON_BOTH]


@pytest.fixture(scope="module")
def built(workspace):
    """Every build of BUILDS, in one fixed order whichever test asks first: what a build leaves
    in the process is the same for every test."""
    found = {}
    for arch, name in BUILDS:
        root = workspace / ARCHS[arch]
        found[arch, name] = quantize(name, spec_of(arch, name), root / "weights", workspace / "pytorch",
                                     root / name, *SIZES[arch], info_out=record_of(root / name))
    return found


def test_calibration_uses_training_images_only(workspace):
    data = workspace / "pytorch"
    picks = calibration_paths(data, 10)
    train = set(list_prepared(data, "train"))
    held_out = {p.name for part in ("query", "gallery", "multi-query", "val") for p in (data / part).rglob("*.jpg")}
    assert len(picks) == 10 and set(picks) <= train
    assert not {p.name for p in picks} & held_out
    assert calibration_paths(data, 10) == picks  # deterministic


def test_calibration_larger_than_train_set_uses_all(workspace, capsys):
    picks = calibration_paths(workspace / "pytorch", 10_000)
    assert len(picks) == len(list_prepared(workspace / "pytorch", "train"))
    assert "using all of them" in capsys.readouterr().err


def test_every_type_is_tested_and_in_the_schema():
    from reidquant.configcheck import schema_part

    assert set(schema_part("variants")["properties"]["type"]["enum"]) == set(TYPES)
    assert {spec["type"] for spec in SPECS.values()} == set(TYPES)


def check_sensitivity(rows, weights):
    """Every quantized layer of the network, in network order, named as the reference names it,
    with an SQNR that quantization noise gives (below the signal, above float rounding)."""
    net, _ = load_checkpoint(weights)
    assert [row["layer"] for row in rows] == weighted_layers(Embedder(net))
    assert [row["index"] for row in rows] == list(range(len(rows)))
    state = torch.load(weights / "net_last.pth", weights_only=True)
    assert all(f"{row['reference_name']}.weight" in state for row in rows)
    assert rows[-1]["part"] == "embedding" and rows[-1]["op"] == "linear"
    assert all(0 < row["sqnr_db"] < 80 for row in rows), [round(row["sqnr_db"], 1) for row in rows]


@pytest.mark.parametrize("arch, name", BUILDS)
def test_variant_builds_loads_and_tracks_fp32(workspace, built, name, arch):
    spec = spec_of(arch, name)  # bf16 too: CPUs without native BF16 emulate it, slowly but correctly
    root = workspace / ARCHS[arch]
    fp32_size = os.path.getsize(root / "fp32" / TYPES["fp32"].WEIGHTS)
    info = built[arch, name]
    assert info["arch"] == arch
    assert info["size_bytes"] == os.path.getsize(root / name / TYPES[spec["type"]].WEIGHTS) > 0
    if name in SIZE_LIMITS:
        assert info["size_bytes"] < SIZE_LIMITS[name] * fp32_size
    assert info["calibration_images"] == spec.get("calibration_images", 0) * (spec.get("precision") != "fp32")
    record = json.loads((root / name / "build.json").read_text())
    assert record["type"] == spec["type"] and record["cpu_isa"] == info["cpu_isa"]
    # The same input in every run.
    h, w = SIZES[arch]
    x = torch.randn(4, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = load_runner(root / name, spec, "cpu")(x)
        ref = load_runner(root / "fp32", SPECS["fp32"], "cpu")(x)
    assert out.shape == (4, 512) and out.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(out, ref).min().item()
    assert cosine > MIN_COSINE.get(name, 0.9)


def test_cuda_request_without_cuda_is_refused(workspace, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ReidQuantError, match="no CUDA device"):
        settings = ExtractSettings(height=H, width=W, batch_size=4, workers=0, ms=(1,), warmup=1, repeats=1,
                                   latency_batches=(1,), latency_rounds=1, threads=None)
        extract_features("fp32", workspace / "fp32", record_of(workspace / "fp32"), SPECS["fp32"], "cuda",
                         workspace / "pytorch",
                         tmp_path / "f.mat", tmp_path / "t.json", settings)
    assert not (tmp_path / "f.mat").exists()


def test_a_job_records_what_its_node_cannot_run(workspace, built, tmp_path, monkeypatch):
    from reidquant.evaluate import evaluate_and_save

    monkeypatch.setenv("REIDQUANT_HIDE_HARDWARE", "bf16")  # this node, as one without native bfloat16 sees it
    settings = ExtractSettings(height=H, width=W, batch_size=4, workers=0, ms=(1,), warmup=1, repeats=1,
                               latency_batches=(1,), latency_rounds=1, threads=None)
    found = extract_features("bf16", workspace / "bf16", record_of(workspace / "bf16"), SPECS["bf16"], "cpu",
                             workspace / "pytorch",
                             tmp_path / "f.mat", tmp_path / "t.json", settings, record_not_run=True)
    record = found["not_run"]
    assert record["reason"] == "this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated"
    assert record["node"] and record["cpu_isa"] and record["device"] == "cpu"
    assert json.loads((tmp_path / "t.json").read_text())["not_run"] == record
    assert evaluate_and_save(tmp_path / "f.mat", json_path=tmp_path / "m.json") == {"not_run": record}
    assert json.loads((tmp_path / "m.json").read_text()) == {"not_run": record}
    with pytest.raises(ReidQuantError, match="^variant bf16 cannot run on cpu on this machine: this CPU has no"):
        extract_features("bf16", workspace / "bf16", record_of(workspace / "bf16"), SPECS["bf16"], "cpu",
                         workspace / "pytorch",
                         tmp_path / "g.mat", tmp_path / "u.json", settings)
    assert not (tmp_path / "g.mat").exists()


def test_device_support_table():
    assert unsupported_reason(SPECS["int8"], "cuda")
    assert unsupported_reason(complete({"type": "half", "dtype": "float16"}), "cpu")
    assert unsupported_reason(SPECS["fp32"], "cuda") is None
    assert unsupported_reason(complete({"type": "half", "dtype": "float16"}), "cuda") is None
    for name in ("ov_fp32", "ov_int8", "ort_fp32", "ort_int8"):  # GPU runtimes are later work
        assert "GPU runtimes" in unsupported_reason(SPECS[name], "cuda")


def test_runner_converts_input():
    seen = {}

    def forward(x):
        seen["dtype"], seen["cl"] = x.dtype, x.is_contiguous(memory_format=torch.channels_last)
        return x.mean(dim=(2, 3))

    out = Runner(forward, dtype=torch.bfloat16, channels_last=True)(torch.randn(2, 3, 8, 4))
    assert seen == {"dtype": torch.bfloat16, "cl": True} and out.dtype == torch.float32


def float_and_int8_layers(folder):
    """The layers of a saved pt2e_int8 program that read float weights, and those on int8 weights."""
    from reidquant.sensitivity import weighted_nodes

    with open(folder / TYPES["pt2e_int8"].ARTIFACT, "rb") as handle:
        module = torch.export.load(handle).module()
    found = {True: [], False: []}
    for layer, node in weighted_nodes(module).items():
        int8 = "dequantize_per_channel" in str(node.args[1].target)
        assert int8 == ("dequantize_per_tensor" in str(node.args[0].target)), f"{layer}: input and weights disagree"
        found[int8].append(layer)
    return found[False], found[True]


def test_pt2e_float_modules_stay_in_floating_point(workspace, tmp_path):
    spec = complete({"type": "pt2e_int8", "calibration_images": 4, "compile": False, "activation_ranges": "minmax",
                     "float_modules": ["embedding.0", "features.transition1"]})
    info = quantize("head_float", spec, workspace / "weights", workspace / "pytorch", tmp_path / "m", H, W)
    in_float, in_int8 = float_and_int8_layers(tmp_path / "m")
    assert in_float == info["float_layers"] == ["features.transition1.conv", "embedding.0"]
    assert len(in_int8) == len(weighted_layers(Embedder(load_checkpoint(workspace / "weights")[0]))) - 2


def test_pt2e_unknown_float_module_is_one_line(workspace, tmp_path):
    spec = complete({"type": "pt2e_int8", "calibration_images": 4, "compile": False, "float_modules": ["features.conv9"]})
    with pytest.raises(ReidQuantError, match=r"^variant x field float_modules: 'features.conv9' is not a convolution"):
        quantize("x", spec, workspace / "weights", workspace / "pytorch", tmp_path / "m", H, W)
    assert not (tmp_path / "m").exists()


# Min-max ranges: a histogram's ranges take a minute to compute for DenseNet, whatever the input size.
AUTO = {"type": "pt2e_int8", "calibration_images": 8, "compile": False, "float_modules": "auto",
        "activation_ranges": "minmax"}


@pytest.fixture(scope="module")
def auto_ranking(workspace, garbage_test_split, tmp_path_factory):
    """What the workflow does first for ``float_modules: auto``: the fully int8 build and its
    sensitivity on val (the same for every budget: it has none)."""
    from reidquant.variants import unranked

    folder = tmp_path_factory.mktemp("auto")
    base = unranked(complete({**AUTO, "float_modules": []}))
    quantize("int8_auto.unranked", base, workspace / "weights", garbage_test_split, folder / "base", H, W,
             info_out=record_of(folder / "base"))
    rows = layer_sensitivity("int8_auto.unranked", base, workspace / "weights", garbage_test_split, folder / "base",
                             record_of(folder / "base"), folder / "sensitivity.csv", H, W)
    return folder / "sensitivity.csv", rows


@pytest.mark.parametrize("metric, max_drop, max_float_layers", [("cos_mean", 0.0, 2), ("mAP", 100.0, None)])
def test_pt2e_auto_float_layers_read_val_and_train_only(workspace, garbage_test_split, auto_ranking, tmp_path, capsys,
                                                        metric, max_drop, max_float_layers):
    spec = complete({**AUTO, "accuracy_control": {"metric": metric, "max_drop": max_drop,
                                                  "max_float_layers": max_float_layers}})
    ranking, rows = auto_ranking
    info = quantize("int8_auto", spec, workspace / "weights", garbage_test_split, tmp_path / "m", H, W,
                    ranking=ranking)
    control, ranked = info["accuracy_control"], sorted(rows, key=lambda row: row["sqnr_db"])
    in_float, _ = float_and_int8_layers(tmp_path / "m")
    assert sorted(in_float) == sorted(info["float_layers"])
    assert info["float_layers"] == [row["layer"] for row in ranked[:len(info["float_layers"])]]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "not met" in line]
    if max_drop == 0.0:  # other activations stay int8: no count of float layers meets it
        assert not control["met"] and set(control["tried"]) == {"0", "1", "2"} and warnings == [
            f"warning: variant int8_auto: accuracy_control.max_drop 0.0 not met on val: cos_mean drops "
            f"{control['drop']:.6g} with {len(info['float_layers'])} layer(s) in float (max_float_layers 2); "
            "built the most faithful setting tried"]
        assert control["drop"] == min(control["tried"].values())
    else:
        assert control["met"] and info["float_layers"] == [] and not warnings
    assert load_runner(tmp_path / "m", spec, "cpu")(torch.zeros(2, 3, H, W)).shape == (2, 512)


def test_pt2e_auto_without_a_ranking_is_one_line(workspace, tmp_path):
    spec = complete({"type": "pt2e_int8", "float_modules": "auto", "accuracy_control": {"metric": "cos_mean",
                                                                                       "max_drop": 0.1}})
    with pytest.raises(ReidQuantError, match="float_modules auto chooses layers by the per-layer sensitivity"):
        quantize("int8_auto", spec, workspace / "weights", workspace / "pytorch", tmp_path / "m", H, W)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_pt2e_sensitivity_measures_the_built_program(workspace, built, tmp_path, arch):
    root = workspace / ARCHS[arch]
    rows = layer_sensitivity("int8", spec_of(arch, "int8"), root / "weights", workspace / "pytorch", root / "int8",
                             record_of(root / "int8"), tmp_path / "sensitivity.csv", *SIZES[arch])
    check_sensitivity(rows, root / "weights")
    assert sum(row.get("cos_mean_gain") is not None for row in rows) == 5
    assert [row["layer"] for row in read_csv(tmp_path / "sensitivity.csv")] == [row["layer"] for row in rows]


@pytest.mark.parametrize("activation_ranges", ["histogram", "minmax"])
def test_pt2e_quantizes_the_input_over_its_full_range(workspace, built, auto_ranking, activation_ranges):
    # Histogram ranges: the default, built once for every test; min-max: the fully int8 build
    # that float_modules auto ranks, calibrated on the same training images.
    folder = workspace / "int8" if activation_ranges == "histogram" else auto_ranking[0].parent / "base"
    with open(folder / TYPES["pt2e_int8"].ARTIFACT, "rb") as handle:
        graph = torch.export.load(handle).graph
    (image,) = [n for n in graph.nodes if n.op == "placeholder" and n.name == "x"]
    (quant,) = [n for n in image.users if "quantize_per_tensor" in str(n.target)]
    count = json.loads(open(record_of(folder)).read())["calibration_images"]
    calibration = torch.cat(calibration_batches(calibration_paths(workspace / "pytorch", count), H, W))
    low, high = min(calibration.min().item(), 0.0), max(calibration.max().item(), 0.0)
    assert quant.args[1] == pytest.approx((high - low) / 255, rel=1e-5)


@pytest.mark.parametrize("damaged, cause", [("model.xml", "Start-end tags mismatch"),
                                            ("model.bin", "Incorrect weights in bin file")])
def test_damaged_openvino_ir_names_the_file_and_the_cause(workspace, built, tmp_path, damaged, cause):
    import shutil

    folder = tmp_path / "ov_fp32"
    shutil.copytree(workspace / "ov_fp32", folder)
    data = (folder / damaged).read_bytes()
    (folder / damaged).write_bytes(data[:len(data) // 2])
    with pytest.raises(ReidQuantError) as error:
        load_runner(folder, SPECS["ov_fp32"], "cpu", "ov_fp32")(torch.randn(2, 3, H, W))
    message = str(error.value)
    assert message.startswith(f"variant ov_fp32: reading the OpenVINO IR {folder / 'model.xml'} "
                              f"(weights {folder / 'model.bin'}) failed: {cause}")
    assert "\n" not in message and "core.cpp" not in message


def test_eager_int8_folds_resnet50s_batchnorms(workspace, built):
    """On ResNet-50 every BatchNorm follows a convolution and folds into it (with its ReLU)."""
    runner = load_runner(workspace / "ft_net" / "int8_seed", SPECS["int8_seed"], "cpu")
    modules = list(runner.forward.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) for m in modules)
    assert sum(type(m).__name__ == "ConvReLU2d" for m in modules) == 1 + 2 * 16  # stem, two per block
    assert sum(type(m).__name__ == "Conv2d" and "quantized" in type(m).__module__ for m in modules) == 16 + 4


def test_openvino_sensitivity_reverts_each_quantizer_group_alone(workspace, built, tmp_path, monkeypatch):
    from nncf.quantization.algorithms.accuracy_control.ranker import Ranker

    find_groups = Ranker.find_groups_of_quantizers_to_rank
    # The groups nearest the output (NNCF lists them last layer first): every group is a
    # compile, seconds each even for the tiny network.
    monkeypatch.setattr(Ranker, "find_groups_of_quantizers_to_rank", lambda *a: find_groups(*a)[:6])
    rows = layer_sensitivity("ov_int8", SPECS["ov_int8"], workspace / "weights", workspace / "pytorch",
                             workspace / "ov_int8", record_of(workspace / "ov_int8"), tmp_path / "sensitivity.csv",
                             H, W)
    layers = weighted_layers(Embedder(load_checkpoint(workspace / "weights")[0]))
    assert 0 < len(rows) < len(layers) and rows[-1]["layer"] == "embedding.0"
    assert [row["layer"] for row in rows] == [layers[row["index"]] for row in rows]
    assert all(row["sqnr_db"] is None and abs(row["cos_mean_gain"]) < 0.1 for row in rows)
    assert any(row["cos_mean_gain"] != 0.0 for row in rows)


def test_openvino_sensitivity_refuses_quantizers_that_are_not_the_deployed_ones(workspace, built, tmp_path):
    other = complete({**SPECS["ov_int8"], "calibration_images": 4})  # not what the artifact was built from
    with pytest.raises(ReidQuantError, match=r"^variant ov_int8: the quantizers made again from its calibration "
                                             r"images do not compute what .*model.xml computes"):
        layer_sensitivity("ov_int8", other, workspace / "weights", workspace / "pytorch", workspace / "ov_int8",
                          record_of(workspace / "ov_int8"), tmp_path / "sensitivity.csv", H, W)
    assert not (tmp_path / "sensitivity.csv").exists()


def test_pt2e_loads_its_compiled_package_without_compiling(workspace, built):
    from reidquant.devices import available_cores

    record = json.loads((workspace / "int8" / "build.json").read_text())
    assert record["package"] == "model_compiled.pt2" and built["ft_net_dense", "int8"]["compile_s"] > 0
    # Compiled for the machine's cores, not the build's one thread: parallel kernels.
    assert record["compiled_for_threads"] == available_cores()
    runner = load_runner(workspace / "int8", SPECS["int8"], "cpu")
    assert runner.config["compiled_for"] == "a dynamic batch, by the build"
    x = torch.randn(4, 3, H, W, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        contiguous = runner(x)
        # The package reads other strides as if they were its own: the runner must hand it those.
        assert torch.equal(runner(x.contiguous(memory_format=torch.channels_last)), contiguous)
        for batch in (1, 5):  # any batch size, no compile
            assert runner(x[:1].expand(batch, -1, -1, -1).contiguous()).shape == (batch, 512)


def test_a_compiled_package_that_is_not_the_builds_is_refused(workspace, built, tmp_path):
    import shutil

    folder = tmp_path / "int8"
    shutil.copytree(workspace / "int8", folder)
    with zipfile.ZipFile(folder / "model_compiled.pt2", "a") as package:
        package.writestr("model/data/aotinductor/model/extra.so", b"\x7fELF")
    with pytest.raises(ReidQuantError, match=r"model_compiled.pt2: refused: it is not the compiled package its "
                                             r"build recorded"):
        load_runner(folder, SPECS["int8"], "cpu", "int8")


def test_a_package_for_vector_instructions_this_cpu_lacks_is_not_loaded(workspace, built, tmp_path, monkeypatch,
                                                                        capsys):
    import shutil

    from reidquant.variants import pt2e_int8

    folder = tmp_path / "int8"
    shutil.copytree(workspace / "int8", folder)
    record = json.loads((folder / "build.json").read_text())
    (folder / "build.json").write_text(json.dumps({**record, "vec_isa": "VecSVE256"}))
    # The portable program compiled here instead: its compile is the subject of other tests.
    monkeypatch.setattr(pt2e_int8, "compiled", lambda module, options: module)
    runner = load_runner(folder, SPECS["int8"], "cpu", "int8")
    assert runner.runtime == "torch+inductor" and runner.config["compiled_for"] == "each batch size"
    assert "warning: variant int8: its compiled package uses VecSVE256 instructions, which this CPU lacks" in \
        capsys.readouterr().err
    assert runner(torch.zeros(2, 3, H, W)).shape == (2, 512)


def ov_int8_controlled(**control):
    return complete({"type": "openvino", "precision": "int8", "calibration_images": 8, "sensitivity": False,
                     "accuracy_control": {"metric": "cos_mean", "max_drop": 1.0, **control}})


@pytest.fixture(scope="module")
def garbage_test_split(workspace, tmp_path_factory):
    """The prepared layout with every query and gallery image replaced by bytes no decoder reads."""
    import shutil

    root = tmp_path_factory.mktemp("garbage") / "pytorch"
    shutil.copytree(workspace / "pytorch", root)
    for part in ("query", "gallery", "multi-query"):
        for image in (root / part).rglob("*.jpg"):
            image.write_bytes(b"not an image")
    return root


@pytest.mark.parametrize("metric", ["cos_mean", "mAP"])
def test_openvino_accuracy_control_reads_val_and_train_only(workspace, garbage_test_split, tmp_path, metric):
    # In a process of its own, as a user runs it: NNCF's accuracy control leaves runtime state
    # behind that later tests of this process need not share.
    spec = ov_int8_controlled(metric=metric)
    result = run_cli("quantize", "--name", "ov_int8_ac", "--spec", json.dumps(spec), "--weights", workspace / "weights",
                     "--data", garbage_test_split, "--out", tmp_path / "m", "--height", H, "--width", W)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    control = info["accuracy_control"]
    assert control["met"] and control["drop"] <= 1.0 and info["float_layers"] == []
    if metric == "cos_mean":
        assert control["fp32_value"] == pytest.approx(1.0)
    runner = load_runner(tmp_path / "m", spec, "cpu")
    assert runner(torch.zeros(2, 3, H, W)).shape == (2, 512)


def test_an_accuracy_budget_nothing_meets_is_said_and_the_most_faithful_model_built(workspace, tmp_path, capsys,
                                                                                    monkeypatch):
    import nncf

    def without_ranking(model, calibration, validation, validate, *, max_drop, drop_type,
                        advanced_quantization_parameters, advanced_accuracy_restorer_parameters, **common):
        # What NNCF returns when no setting it tries meets the budget: a model still over it.
        # (Its ranking compiles the model once per quantizer group: minutes even for a tiny one.)
        assert advanced_accuracy_restorer_parameters.max_num_iterations == 1 and max_drop == 0.0
        return nncf.quantize(model, calibration, advanced_parameters=advanced_quantization_parameters, **common)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", without_ranking)
    info = quantize("ov_int8_ac", ov_int8_controlled(max_drop=0.0, max_float_layers=1), workspace / "weights",
                    workspace / "pytorch", tmp_path / "m", H, W)
    assert not info["accuracy_control"]["met"] and len(info["float_layers"]) <= 1
    err = [line for line in capsys.readouterr().err.splitlines() if "not met" in line]
    assert len(err) == 1 and err[0].startswith("warning: variant ov_int8_ac: accuracy_control.max_drop 0.0 not met on val")
    assert (tmp_path / "m" / "model.xml").exists()


@pytest.mark.parametrize("spec, message", [
    ({"type": "pt2e_int8", "float_modules": "auto"},
     "variants.x field float_modules: auto needs accuracy_control {metric, max_drop}"),
    ({"type": "pt2e_int8", "accuracy_control": {"metric": "mAP", "max_drop": 1}},
     "variants.x field accuracy_control: applies with float_modules: auto only"),
    ({"type": "pt2e_int8", "float_modules": "auto", "accuracy_control": {"metric": "cos", "max_drop": 1}},
     "variants.x field accuracy_control.metric: 'cos' is not one of"),
    ({"type": "pt2e_int8", "float_modules": "auto", "accuracy_control": {"metric": "mAP", "max_drop": -0.5}},
     "variants.x field accuracy_control.max_drop: -0.5 is less than the minimum of 0"),
    ({"precision": "int8", "accuracy_control": {"metric": "top1", "max_drop": 0.1}},
     "variants.x field accuracy_control.metric: 'top1' is not one of"),
    ({"precision": "int8", "accuracy_control": {"metric": "mAP", "max_drop": -1}},
     "variants.x field accuracy_control.max_drop: -1 is less than the minimum of 0"),
    ({"precision": "fp32", "accuracy_control": {"metric": "mAP", "max_drop": 1}},
     "variants.x field accuracy_control: applies to precision int8 only, not fp32"),
    ({"precision": "int8", "accuracy_control": {"metric": "mAP"}},
     "variants.x field accuracy_control: 'max_drop' is a required property"),
])
def test_bad_accuracy_control_is_one_line_naming_the_variant_and_field(spec, message):
    with pytest.raises(ReidQuantError) as error:
        complete({"type": "openvino", **spec}, "config field variants.x")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_conversion_without_qat_folding_is_torchaos_own(workspace):
    """pt2e_int8.convert skips torchao's QAT conv-BatchNorm folding where nothing can fold (on
    DenseNet-121's pre-activation BatchNorms): the graph must be the one convert_pt2e makes."""
    import copy

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from reidquant.variants.pt2e_int8 import convert, quantization_config

    embedder = Embedder(load_checkpoint(workspace / "weights")[0]).eval()
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    quantizer = X86InductorQuantizer()
    quantizer.set_global(quantization_config("minmax"))
    prepared = prepare_pt2e(torch.export.export(embedder, (x,)).module(), quantizer)
    prepared(x)
    ours, torchaos = convert(copy.deepcopy(prepared)), convert_pt2e(prepared)
    assert str(ours.graph) == str(torchaos.graph) and torch.equal(ours(x), torchaos(x))


def moved_copy(workspace, name, tmp_path):
    """A built artifact and its build record, copied as a bundle moved between machines comes."""
    import shutil

    folder = tmp_path / name
    shutil.copytree(workspace / name, folder)
    shutil.copy2(record_of(workspace / name), record_of(folder))
    return folder


def rewrite_entry(path, suffix: str, edit):
    """The zip at ``path`` with the entry whose name ends in ``suffix`` edited (bytes -> bytes)."""
    with zipfile.ZipFile(path) as old:
        items = [(info, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(path, "w") as new:
        for info, data in items:
            new.writestr(info, edit(data) if info.filename.endswith(suffix) else data)


def first_size_expression(program: dict) -> dict:
    """The first dict of a serialized program that holds a symbolic size (``expr_str``)."""
    stack = [program]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if isinstance(value.get("expr_str"), str):
                return value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    raise AssertionError("no symbolic size in the program")


def with_guards_code(code: str):
    return lambda data: json.dumps({**json.loads(data), "guards_code": [code]}).encode()


def with_size_expression(code: str):
    def edit(data):
        program = json.loads(data)
        first_size_expression(program)["expr_str"] = code
        return json.dumps(program).encode()
    return edit


@pytest.mark.parametrize("edit, message, command", [
    (with_guards_code("__import__('os').system('touch {marker}') == 0"),
     "refused: field guards_code holds Python code, which loading the program would run", "extract"),
    (with_size_expression("__import__('os').system('touch {marker}')"),
     "is not a symbolic size, and reading it would run it as Python", "sensitivity"),
], ids=["guards_code", "expr_str"])
def test_a_program_carrying_code_is_refused_before_any_of_it_runs(workspace, built, tmp_path, edit, message, command):
    """What a crafted archive would run, with its build's records made to match it: extract or
    sensitivity (the CLI's and the rules' paths; both load through pt2e_int8.load) refuse it in
    one line, and nothing ran."""
    from conftest import record_build

    marker = tmp_path / "code-ran"
    folder = moved_copy(workspace / "ft_net", "int8", tmp_path)
    rewrite_entry(folder / "model.pt2", "models/model.json",
                  lambda data: edit(data).replace(b"{marker}", str(marker).encode()))
    record_build(folder)
    data = workspace / "pytorch"
    spec = json.dumps(spec_of("ft_net", "int8"))
    sizes = ["--height", SIZES["ft_net"][0], "--width", SIZES["ft_net"][1]]
    if command == "extract":
        result = run_cli("extract", "--artifact", folder, "--spec", spec, "--data", data, "--out", tmp_path / "f.mat",
                         "--timing", tmp_path / "t.json", "--latency-batches", 1, "--latency-rounds", 1, *sizes)
    else:
        result = run_cli("sensitivity", "--name", "int8", "--artifact", folder, "--spec", spec, "--weights",
                         workspace / "ft_net" / "weights", "--data", data, "--out", tmp_path / "s.csv", *sizes)
    lines = [line for line in result.stderr.splitlines() if line.startswith("reidquant:")]  # not torch's warnings
    assert result.returncode == 1 and len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"reidquant: error: {folder / 'model.pt2'}:") and "/models/" in lines[0]
    assert not marker.exists()
    assert not any((tmp_path / name).exists() for name in ("f.mat", "t.json", "s.csv"))


def test_a_swapped_artifact_file_is_one_line_and_nothing_is_measured(workspace, built, tmp_path):
    """An fp32 model.onnx copied over the int8 one keeps no int8 label: its sha256 is not the build's."""
    import shutil

    folder = moved_copy(workspace, "ort_int8", tmp_path)
    shutil.copy2(workspace / "ort_fp32" / "model.onnx", folder / "model.onnx")
    result = run_cli("extract", "--artifact", folder, "--spec", json.dumps(SPECS["ort_int8"]), "--data",
                     workspace / "pytorch", "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json",
                     "--height", H, "--width", W)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"reidquant: error: {folder / 'model.onnx'}: not the file its build recorded in "
                               f"{record_of(folder)} (sha256 ")
    assert lines[0].endswith(f"--forcerun {record_of(folder)})")
    assert not (tmp_path / "f.mat").exists() and not (tmp_path / "t.json").exists()


def test_a_compiled_package_built_elsewhere_loads_only_when_trusted(workspace, built, tmp_path, monkeypatch):
    """A package is native code: the builds of this machine vouch for it, or the user does."""
    monkeypatch.setenv("REIDQUANT_BUILT_HERE", str(tmp_path / "built_here"))  # a machine that built nothing
    with pytest.raises(ReidQuantError, match=r"model_compiled.pt2: refused: a compiled package is native code, "
                                             r"which loading runs, and no build on this machine made this one .* "
                                             r"\(config field trust_compiled: true, --trust-compiled on the command "
                                             r"line\)$"):
        load_runner(workspace / "int8", SPECS["int8"], "cpu", "int8")
    runner = load_runner(workspace / "int8", SPECS["int8"], "cpu", "int8", trust_compiled=True)
    assert runner.config["runtime"] == "torch+aotinductor" and runner(torch.zeros(1, 3, H, W)).shape == (1, 512)


def test_a_crafted_package_whose_records_match_it_is_still_refused(workspace, built, tmp_path):
    """A library of the attacker's, and build.json and quantize.json edited to its sha256: no
    build here made it, so it is refused before anything loads it."""
    from conftest import record_build
    from reidquant.safeload import sha256_of

    folder = moved_copy(workspace, "int8", tmp_path)
    rewrite_entry(folder / "model_compiled.pt2", ".wrapper.so", lambda data: b"\x7fELF crafted")
    record = json.loads((folder / "build.json").read_text())
    (folder / "build.json").write_text(json.dumps({**record, "package_sha256": sha256_of(folder / "model_compiled.pt2")}))
    record_build(folder)
    with pytest.raises(ReidQuantError, match="no build on this machine made this one"):
        load_runner(folder, SPECS["int8"], "cpu", "int8")
