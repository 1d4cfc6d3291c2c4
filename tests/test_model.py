import pytest
import torch
import yaml

from reidquant.errors import ReidQuantError
from reidquant.model import Embedder, ft_net_dense, load_checkpoint, read_opts, save_untrained


def write_checkpoint(folder, state, opts):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "net_last.pth")
    (folder / "opts.yaml").write_text(yaml.safe_dump(opts))
    return folder


def reference_state(nclasses=751, stride=2, linear_num=512):
    torch.manual_seed(0)
    return ft_net_dense(nclasses, stride=stride, linear_num=linear_num).state_dict()


def test_reference_state_dict_layout():
    state = reference_state()
    # the unused ImageNet head that the published checkpoints carry
    assert state["model.classifier.weight"].shape == (1000, 1024)
    assert state["classifier.add_block.0.weight"].shape == (512, 1024)
    assert state["classifier.add_block.1.running_mean"].shape == (512,)
    assert state["classifier.classifier.0.weight"].shape == (751, 512)


@pytest.mark.parametrize("stride", [1, 2])
def test_loads_strictly_and_embeds(tmp_path, stride):
    folder = write_checkpoint(tmp_path / "ft_net_dense", reference_state(10, stride, 256),
                              {"nclasses": 10, "stride": stride, "linear_num": 256, "use_dense": True})
    net, opts = load_checkpoint(folder)
    assert opts["stride"] == stride
    emb = Embedder(net).eval()
    with torch.no_grad():
        out = emb(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, 256)
    # the embedding is the BatchNorm1d output of the reference model's add_block
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 32)
        expected = net.classifier.add_block(net.model.features(x).flatten(1))
        assert torch.allclose(emb(x), expected, atol=1e-5)


def test_dataparallel_prefix_is_accepted(tmp_path):
    state = {f"module.{k}": v for k, v in reference_state(10).items()}
    load_checkpoint(write_checkpoint(tmp_path / "c", state, {"nclasses": 10}))


def test_missing_key_is_named(tmp_path):
    state = reference_state(10)
    del state["model.classifier.weight"]
    folder = write_checkpoint(tmp_path / "c", state, {"nclasses": 10})
    with pytest.raises(ReidQuantError, match="missing key 'model.classifier.weight'"):
        load_checkpoint(folder)


def test_unexpected_key_is_named(tmp_path):
    state = reference_state(10)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ReidQuantError, match="unexpected key 'extra.weight'"):
        load_checkpoint(write_checkpoint(tmp_path / "c", state, {"nclasses": 10}))


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(751), {"nclasses": 10})
    with pytest.raises(ReidQuantError, match=r"'classifier.classifier.0.weight' has shape \[751, 512\] in the "
                                             r"checkpoint but \[10, 512\] in the model"):
        load_checkpoint(folder)


def test_opts_problems(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(10), {"stride": 2})
    with pytest.raises(ReidQuantError, match="opts.yaml: missing field 'nclasses'"):
        load_checkpoint(folder)
    (folder / "opts.yaml").write_text("nclasses: 10\nstride: 3\n")
    with pytest.raises(ReidQuantError, match="stride must be 1 or 2"):
        read_opts(folder / "opts.yaml")
    (folder / "opts.yaml").unlink()
    with pytest.raises(ReidQuantError, match="opts.yaml not found"):
        load_checkpoint(folder)


def test_corrupt_checkpoint(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(10), {"nclasses": 10})
    data = (folder / "net_last.pth").read_bytes()
    (folder / "net_last.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReidQuantError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(folder)


def test_untrained_checkpoint_is_reference_format(tmp_path):
    save_untrained(tmp_path / "u", seed=1, nclasses=20)
    net, opts = load_checkpoint(tmp_path / "u")
    assert opts["nclasses"] == 20
