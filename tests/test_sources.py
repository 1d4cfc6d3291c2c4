"""Where a run's data and weights come from, decided from the config and the disk alone."""

import pytest

from reidquant import sources
from reidquant.configcheck import SCHEMA_PATH, check_config
from reidquant.errors import ReidQuantError
from reidquant.variants import complete


def config(**sections):
    base = {"dataset": {"source": "auto", "url": None}, "model": {"weights": "auto"}, "devices": ["cpu", "cuda"],
            "variants": {"fp32": {"type": "fp32"}}}
    return {**base, **sections}


def test_auto_uses_the_real_dataset_when_it_is_on_disk(tmp_path):
    chosen = sources.dataset(config(), tmp_path)
    assert chosen.name == "synthetic" and "EMBEDDED SYNTHETIC" in chosen.note
    assert chosen.prepared == sources.PREPARED["synthetic"]
    (tmp_path / sources.REAL_ZIP).parent.mkdir()
    (tmp_path / sources.REAL_ZIP).write_bytes(b"zip")
    chosen = sources.dataset(config(), tmp_path)
    assert (chosen.name, chosen.prepared, chosen.note) == ("market1501", sources.PREPARED["market1501"], "")


def test_a_url_counts_as_the_real_dataset(tmp_path):
    assert sources.dataset(config(dataset={"source": "auto", "url": "https://x/m.zip"}), tmp_path).name == "market1501"


def test_required_real_dataset_missing_is_one_line(tmp_path):
    with pytest.raises(ReidQuantError, match="dataset.source is market1501 but neither"):
        sources.dataset(config(dataset={"source": "market1501", "url": None}), tmp_path)


def test_synthetic_is_never_the_real_one(tmp_path):
    (tmp_path / sources.REAL_RAW).mkdir(parents=True)
    chosen = sources.dataset(config(dataset={"source": "synthetic", "url": None}), tmp_path)
    assert chosen.name == "synthetic" and sources.MARKET / "synthetic" in chosen.raw.parents


@pytest.mark.parametrize("setting, folder, label", [
    ("train", "results/train/synthetic", "trained"),
    ("untrained", "results/untrained/synthetic", "untrained"),
    ("https://example.org/net_last.pth", None, "https://example.org/net_last.pth"),
    ("1AbCdEfGhIjKlMnOpQrStUvWxYz012345", None, "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
])
def test_weights_settings(tmp_path, setting, folder, label):
    chosen = sources.weights(config(model={"weights": setting}), "synthetic", tmp_path)
    assert chosen.label == label
    if folder:
        assert str(chosen.folder) == folder
    else:  # downloads get a folder of their own per source
        assert chosen.folder == sources.download_folder(setting) != sources.download_folder(setting + "x")


def test_auto_weights_prefer_the_checkpoint(tmp_path):
    chosen = sources.weights(config(), "market1501", tmp_path)
    assert (str(chosen.folder), chosen.label) == ("results/train/market1501", "trained") and chosen.note
    (tmp_path / sources.CHECKPOINT).mkdir(parents=True)
    (tmp_path / sources.CHECKPOINT / "net_last.pth").write_bytes(b"")
    with pytest.raises(ReidQuantError, match="model.weights=auto: model/ft_net_dense/opts.yaml not found"):
        sources.weights(config(), "market1501", tmp_path)
    (tmp_path / sources.CHECKPOINT / "opts.yaml").write_text("nclasses: 751\n")
    assert sources.weights(config(), "market1501", tmp_path).folder == sources.CHECKPOINT


def test_missing_checkpoint_folder_is_one_line(tmp_path):
    with pytest.raises(ReidQuantError, match="model.weights: nowhere/net_last.pth not found"):
        sources.weights(config(model={"weights": "nowhere"}), "synthetic", tmp_path)


@pytest.mark.parametrize("hidden", ["", "cuda,bf16"])
def test_planning_skips_only_what_cannot_run_anywhere(monkeypatch, hidden):
    """Whether a machine has CUDA or native bfloat16 is its jobs' to decide, on their node: the
    plan is the same whatever the planning machine has."""
    monkeypatch.setenv("REIDQUANT_HIDE_HARDWARE", hidden)
    variants = {"fp32": {"type": "fp32"}, "int8": {"type": "pt2e_int8"}, "fp16": {"type": "half", "dtype": "float16"},
                "bf16": {"type": "half", "dtype": "bfloat16"}}
    chosen = config(variants={name: complete(spec) for name, spec in variants.items()})
    check_config(chosen, SCHEMA_PATH)
    runnable, skipped = sources.jobs(chosen)
    assert runnable == [("fp32", "cpu"), ("int8", "cpu"), ("bf16", "cpu"), ("fp32", "cuda"), ("fp16", "cuda"),
                        ("bf16", "cuda")]
    assert [row[:2] for row in skipped] == [("fp16", "cpu"), ("int8", "cuda")]
    assert "no fast fp16 convolutions" in skipped[0][2] and "CPUs only" in skipped[1][2]
