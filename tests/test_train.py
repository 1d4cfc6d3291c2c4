import numpy as np
import pytest
import torch
import yaml

from reidquant.errors import ReidQuantError
from reidquant.evaluate import evaluate
from reidquant.features import Runner, extract
from reidquant.market import labels_and_cameras, list_prepared, prepare
from reidquant.model import Embedder, load_checkpoint, read_opts, untrained
from reidquant import train as train_module
from reidquant.synth import SynthSizes, generate

H, W = 64, 32
HP = {"epochs": 20, "workers": 0, "bf16": False, "batch_size": 16, "lr": 3e-4, "low_res_epochs": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    sizes = SynthSizes.from_settings(dict(train_ids=8, test_ids=6, images_per_camera=3, cameras_per_id=2,
                                          distractors=2, junk=1, multi_query_per_query=0, seed=5))
    generate(root / "raw", sizes, progress=False)
    prepare(root / "raw", root / "pytorch")
    return root / "pytorch"


def training_identities_map(net, data):
    """mAP of ``train_all`` ranked against itself: each image's true matches are its identity's
    images from the other camera. Unlike the 6-identity test split, where the outcome of 20
    epochs from scratch swings with the CPU's float kernels (0.21 to 0.41), ranking the
    identities trained on is what training reliably does (0.29 -> 0.95 with AVX512-BF16, AVX2
    and SSE4.1 oneDNN kernels alike)."""
    paths = list_prepared(data, "train_all")
    features = extract(Runner(Embedder(net).eval()), paths, H, W, batch_size=16, workers=0)
    labels, cameras = (np.array(v) for v in labels_and_cameras(paths))
    return evaluate(features, labels, cameras, features, labels, cameras)["mAP"]


def test_recipes():
    assert train_module.recipe({"recipe": "auto"}, "market1501")["optimizer"] == "sgd"
    short = train_module.recipe({"recipe": "auto", "epochs": 3}, "synthetic")
    assert short["recipe"] == "cpu_short" and short["epochs"] == 3
    reference = train_module.RECIPES["reference"]
    assert (reference["lr"], reference["backbone_lr_mult"], reference["batch_size"]) == (0.05, 0.1, 32)


def test_training_improves_ranking_and_writes_reference_format(data, tmp_path):
    hp = train_module.recipe(HP, "synthetic")
    summary = train_module.train(data, tmp_path / "ckpt", hp, height=H, width=W)
    assert summary["bf16"] is False  # fp32 on every CPU, so the test means the same everywhere
    assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]
    net, opts = load_checkpoint(tmp_path / "ckpt")  # loads exactly like a downloaded checkpoint
    assert read_opts(tmp_path / "ckpt" / "opts.yaml")["nclasses"] == 8 and opts["h"] == H
    assert (tmp_path / "ckpt" / "training_curve.png").stat().st_size > 1000
    assert not (tmp_path / "ckpt" / "resume.pt").exists()
    before = training_identities_map(untrained(0, 8)[0], data)
    after = training_identities_map(net, data)
    assert after > before + 0.3, (before, after)


def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path, monkeypatch, capsys):
    hp = train_module.recipe({**HP, "epochs": 3}, "synthetic")
    train_module.train(data, tmp_path / "straight", hp, height=H, width=W)
    real_epoch = train_module.train_one_epoch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(data, tmp_path / "resumed", hp, height=H, width=W)
    assert (tmp_path / "resumed" / "resume.pt").exists()
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)
    train_module.train(data, tmp_path / "resumed", hp, height=H, width=W)
    assert "resuming" in capsys.readouterr().out
    straight = torch.load(tmp_path / "straight" / "net_last.pth")
    resumed = torch.load(tmp_path / "resumed" / "net_last.pth")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    # Trained channels-last, saved in the layout every loader expects.
    assert all(tensor.is_contiguous() for tensor in straight.values())


def test_zero_epochs_is_refused(data, tmp_path):
    from reidquant.errors import ReidQuantError

    with pytest.raises(ReidQuantError, match="epochs must be at least 1"):
        train_module.train(data, tmp_path / "none", train_module.recipe({**HP, "epochs": 0}, "synthetic"),
                           height=H, width=W)
    assert not (tmp_path / "none" / "net_last.pth").exists()


def test_low_res_epochs_come_first_at_half_size_never_below_what_the_network_runs():
    hp = train_module.recipe({"epochs": 4, "low_res_epochs": 3}, "synthetic")
    sizes = [train_module.epoch_size(epoch, hp, 256, 128) for epoch in range(4)]
    assert sizes == [(128, 64)] * 3 + [(256, 128)]
    assert train_module.epoch_size(0, hp, 64, 32) == (32, 29)


def test_fewer_epochs_keep_the_recipes_full_size_ending(capsys):
    hp = train_module.recipe({"epochs": 2}, "synthetic")  # cpu_short: 8 of 10 epochs at half size
    assert hp["low_res_epochs"] == 0
    assert "low_res_epochs 8 becomes 0, so that 2 of them run at full size" in capsys.readouterr().err
    assert train_module.recipe({"epochs": 5}, "synthetic")["low_res_epochs"] == 3
    assert train_module.recipe({}, "synthetic")["low_res_epochs"] == 8
    with pytest.raises(ReidQuantError, match=r"train.low_res_epochs \(2\) must be less than train.epochs \(2\)"):
        train_module.recipe({"epochs": 2, "low_res_epochs": 2}, "synthetic")


def test_resnet50_trains_into_the_reference_ft_net_format(data, tmp_path):
    hp = train_module.recipe({**HP, "epochs": 1, "arch": "ft_net"}, "synthetic")
    train_module.train(data, tmp_path / "ft_ResNet50", hp, height=H, width=W)
    opts = yaml.safe_load((tmp_path / "ft_ResNet50" / "opts.yaml").read_text())
    assert opts["use_dense"] is False and opts["name"] == "ft_ResNet50" and "arch" not in opts
    net, read = load_checkpoint(tmp_path / "ft_ResNet50")  # strictly, ImageNet head included
    assert read["arch"] == "ft_net" and "model.fc.weight" in net.state_dict()
