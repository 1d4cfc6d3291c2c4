import os

import pytest
import torch

from reidquant.devices import unsupported_reason
from reidquant.features import Runner
from reidquant.market import list_prepared, prepare
from reidquant.model import Embedder, save_untrained
from reidquant.pipeline import calibration_paths, extract_features, quantize
from reidquant.synth import SynthSizes, generate
from reidquant.variants import load_runner

H, W = 64, 32
SPECS = {
    "fp32": {"type": "fp32"},
    "int8_seed": {"type": "eager_int8", "calibration_images": 8},
    "fp16_dynamic_seed": {"type": "dynamic_fp16"},
    "int8": {"type": "pt2e_int8", "calibration_images": 8, "compile": False},
    "bf16": {"type": "half", "dtype": "bfloat16", "channels_last": True},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    generate(root / "raw", SynthSizes(train_ids=4, test_ids=3, images_per_camera=2, cameras_per_id=2,
                                      distractors=2, junk=1, multi_query_per_query=0), progress=False)
    prepare(root / "raw", root / "pytorch")
    save_untrained(root / "weights", seed=0, nclasses=4)
    return root


def test_calibration_uses_training_images_only(workspace):
    data = workspace / "pytorch"
    picks = calibration_paths(data, 10)
    train = set(list_prepared(data, "train_all"))
    held_out = {p.name for part in ("query", "gallery", "multi-query") for p in (data / part).rglob("*.jpg")}
    assert len(picks) == 10 and set(picks) <= train
    assert not {p.name for p in picks} & held_out
    assert calibration_paths(data, 10) == picks  # deterministic


def test_calibration_larger_than_train_set_uses_all(workspace, capsys):
    picks = calibration_paths(workspace / "pytorch", 10_000)
    assert len(picks) == len(list_prepared(workspace / "pytorch", "train_all"))
    assert "using all of them" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(SPECS))
def test_variant_builds_loads_and_tracks_fp32(workspace, name):
    spec = SPECS[name]  # bf16 too: CPUs without native BF16 emulate it, slowly but correctly
    fp32_path = workspace / "fp32.pt"
    if not fp32_path.exists():
        quantize("fp32", SPECS["fp32"], workspace / "weights", workspace / "pytorch", fp32_path, H, W)
    path = workspace / f"{name}.pt"
    info = quantize(name, spec, workspace / "weights", workspace / "pytorch", path, H, W)
    assert info["size_bytes"] == os.path.getsize(path) > 0
    if name in ("int8_seed", "int8"):
        assert info["size_bytes"] < 0.35 * os.path.getsize(fp32_path)
        assert info["calibration_images"] == 8
    if name == "bf16":
        assert info["size_bytes"] < 0.55 * os.path.getsize(fp32_path)
    x = torch.randn(4, 3, H, W)
    with torch.inference_mode():
        out = load_runner(path, spec, "cpu")(x)
        ref = load_runner(fp32_path, SPECS["fp32"], "cpu")(x)
    assert out.shape == (4, 512) and out.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(out, ref).min().item()
    assert cosine > {"fp32": 0.99999, "fp16_dynamic_seed": 0.999, "bf16": 0.99}.get(name, 0.9)


def test_cuda_request_without_cuda_is_refused(workspace, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from reidquant.errors import ReidQuantError
    with pytest.raises(ReidQuantError, match="no CUDA device"):
        extract_features(workspace / "fp32.pt", SPECS["fp32"], "cuda", workspace / "pytorch",
                         tmp_path / "f.mat", tmp_path / "t.json", H, W)
    assert not (tmp_path / "f.mat").exists()


def test_device_support_table():
    assert unsupported_reason({"type": "pt2e_int8"}, "cuda")
    assert unsupported_reason({"type": "half", "dtype": "float16"}, "cpu")
    assert unsupported_reason({"type": "fp32"}, "cuda") is None
    assert unsupported_reason({"type": "half", "dtype": "float16"}, "cuda") is None


def test_runner_converts_input():
    seen = {}

    def forward(x):
        seen["dtype"], seen["cl"] = x.dtype, x.is_contiguous(memory_format=torch.channels_last)
        return x.mean(dim=(2, 3))

    out = Runner(forward, dtype=torch.bfloat16, channels_last=True)(torch.randn(2, 3, 8, 4))
    assert seen == {"dtype": torch.bfloat16, "cl": True} and out.dtype == torch.float32
