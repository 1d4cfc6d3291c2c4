"""Config checks outside Snakemake: --config coercion, sizes the network can run, spec defaults."""

import os

import pytest
import torch

from reidquant.configcheck import MIN_INPUT_SIZE, SCHEMA_PATH, check_input_size, checked, coerce_config, schema_part
from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_dir, write_json
from reidquant.model import DEFAULT_OPTS, Embedder, build


def test_strings_become_the_schema_types():
    config = {"threads": "null", "dataset": {"check_counts": "false", "url": "null", "source": "synthetic",
                                             "synthetic": {"train_ids": "7"}},
              "train": {"lr": "1e-3", "stride": "1", "bf16": "true", "recipe": "auto"},
              "extract": {"ms": ["1", "0.5"]},
              "variants": {"int8": {"type": "pt2e_int8", "calibration_images": "1024", "compile": "false"},
                           "odd": {"type": "fp32", "channels_last": "maybe"}}}
    coerce_config(config, SCHEMA_PATH)
    assert config["threads"] is None and config["dataset"]["check_counts"] is False
    assert config["dataset"]["url"] is None and config["dataset"]["synthetic"]["train_ids"] == 7
    assert config["train"] == {"lr": 0.001, "stride": 1, "bf16": True, "recipe": "auto"}
    assert config["extract"]["ms"] == [1, 0.5]
    assert config["variants"]["int8"] == {"type": "pt2e_int8", "calibration_images": 1024, "compile": False}
    assert config["variants"]["odd"]["channels_last"] == "maybe"  # left for validation to name


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("arch", ["ft_net_dense", "ft_net"])
def test_min_input_size_is_what_the_network_runs(stride, arch):
    from reidquant.architectures import architecture

    minimum = architecture(arch).MIN_INPUT_SIZE
    net = Embedder(build({**DEFAULT_OPTS, **architecture(arch).OPTS, "nclasses": 3, "stride": stride})).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, minimum, minimum)).shape == (2, 512)
        if minimum > 1:
            with pytest.raises(RuntimeError):
                net(torch.randn(2, 3, minimum - 1, 64))
    # the config's minimum is the strictest network's
    assert MIN_INPUT_SIZE == max(architecture(name).MIN_INPUT_SIZE for name in ("ft_net_dense", "ft_net"))
    assert schema_part("input")["properties"]["height"]["minimum"] == MIN_INPUT_SIZE
    assert schema_part("input")["properties"]["width"]["minimum"] == MIN_INPUT_SIZE


def test_multi_scale_sizes():
    check_input_size(256, 128, [1, 0.25])  # 64 pixels wide at the smallest scale
    with pytest.raises(ReidQuantError, match=r"ms: scale 0.05 turns the 256x128 input into 57x28"):
        check_input_size(256, 128, [1, 0.05])


def test_spec_defaults_come_from_the_schema():
    spec = checked({"type": "pt2e_int8"}, schema_part("variants"), "--spec")
    assert spec == {"type": "pt2e_int8", "calibration_images": 256, "compile": True, "mixed_bf16": False,
                    "activation_ranges": "histogram", "float_modules": [], "sensitivity": True,
                    "accuracy_control": None, "reduce_range": "auto"}
    assert checked({"type": "half", "dtype": "float16"}, schema_part("variants"), "--spec")["channels_last"] is True


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "a" / "m.json", {"x": 1})
        with atomic_dir(tmp_path / "folder") as staging:
            (staging / "inside.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "m.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "folder"]  # no staging copies left


def test_failed_atomic_dir_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "folder") as staging:
            (staging / "half.txt").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writes_staging_is_cleaned_on_the_next_write(tmp_path):
    """SIGKILL skips every clean-up: the next write of the same path removes what it left."""
    (tmp_path / ".model.k1ll3d00").mkdir()
    (tmp_path / ".model.k1ll3d00" / "model.bin").write_text("half")
    (tmp_path / ".m.json.abcdefgh").write_text("{")
    (tmp_path / ".model.keep").mkdir()  # not a staging name: left alone
    with atomic_dir(tmp_path / "model") as staging:
        (staging / "model.xml").write_text("x")
    write_json(tmp_path / "m.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.keep", "m.json", "model"]
