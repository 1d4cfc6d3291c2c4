import pytest
import torch

from reidquant.evaluate import MAT_KEYS, evaluate
from reidquant.features import Runner, extract_dataset
from reidquant.market import prepare
from reidquant.model import Embedder, load_checkpoint, read_opts, untrained
from reidquant import train as train_module
from reidquant.synth import SynthSizes, generate

H, W = 64, 32
HP = {"epochs": 20, "workers": 0, "bf16": False, "batch_size": 16, "lr": 3e-4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    generate(root / "raw", SynthSizes(train_ids=8, test_ids=6, images_per_camera=3, cameras_per_id=2,
                                      distractors=2, junk=1, multi_query_per_query=0, seed=5), progress=False)
    prepare(root / "raw", root / "pytorch")
    return root / "pytorch"


def mean_ap(net, data):
    mat, _ = extract_dataset(Runner(Embedder(net).eval()), data, H, W, batch_size=16, workers=0, warmup=1,
                             repeats=1)
    return evaluate(*(mat[k] for k in MAT_KEYS))["mAP"]


def test_recipes():
    assert train_module.recipe({"recipe": "auto"}, "market1501")["optimizer"] == "sgd"
    short = train_module.recipe({"recipe": "auto", "epochs": 3}, "synthetic")
    assert short["recipe"] == "cpu_short" and short["epochs"] == 3
    reference = train_module.RECIPES["reference"]
    assert (reference["lr"], reference["backbone_lr_mult"], reference["batch_size"]) == (0.05, 0.1, 32)


def test_training_improves_ranking_and_writes_reference_format(data, tmp_path):
    hp = train_module.recipe(HP, "synthetic")
    summary = train_module.train(data, tmp_path / "ckpt", hp, height=H, width=W)
    assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]
    net, opts = load_checkpoint(tmp_path / "ckpt")  # loads exactly like a downloaded checkpoint
    assert read_opts(tmp_path / "ckpt" / "opts.yaml")["nclasses"] == 8 and opts["h"] == H
    assert (tmp_path / "ckpt" / "training_curve.png").stat().st_size > 1000
    assert not (tmp_path / "ckpt" / "resume.pt").exists()
    before = mean_ap(untrained(0, 8)[0], data)
    after = mean_ap(net, data)
    assert after > before + 0.1, (before, after)


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
