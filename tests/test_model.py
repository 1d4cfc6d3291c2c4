import pytest
import torch
import yaml

from reidquant.errors import ReidQuantError
from reidquant.architectures import UNSUPPORTED_FLAGS
from reidquant.architectures.ft_net import ft_net
from reidquant.architectures.ft_net_dense import ft_net_dense
from reidquant.model import Embedder, load_checkpoint, read_opts, save_untrained

DENSE = {"use_dense": True}


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
    load_checkpoint(write_checkpoint(tmp_path / "c", state, {"nclasses": 10, **DENSE}))


def test_missing_key_is_named(tmp_path):
    state = reference_state(10)
    del state["model.classifier.weight"]
    folder = write_checkpoint(tmp_path / "c", state, {"nclasses": 10, **DENSE})
    with pytest.raises(ReidQuantError, match="missing key 'model.classifier.weight'"):
        load_checkpoint(folder)


def test_unexpected_key_is_named(tmp_path):
    state = reference_state(10)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ReidQuantError, match="unexpected key 'extra.weight'"):
        load_checkpoint(write_checkpoint(tmp_path / "c", state, {"nclasses": 10, **DENSE}))


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(751), {"nclasses": 10, **DENSE})
    with pytest.raises(ReidQuantError, match=r"'classifier.classifier.0.weight' has shape \[751, 512\] in the "
                                             r"checkpoint but \[10, 512\] in the model"):
        load_checkpoint(folder)


def test_opts_problems(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(10), {"stride": 2, **DENSE})
    with pytest.raises(ReidQuantError, match="opts.yaml: missing field 'nclasses'"):
        load_checkpoint(folder)
    (folder / "opts.yaml").write_text("nclasses: 10\nstride: 3\nuse_dense: true\n")
    with pytest.raises(ReidQuantError, match="stride must be 1 or 2"):
        read_opts(folder / "opts.yaml")
    (folder / "opts.yaml").unlink()
    with pytest.raises(ReidQuantError, match="opts.yaml not found"):
        load_checkpoint(folder)


def test_corrupt_checkpoint(tmp_path):
    folder = write_checkpoint(tmp_path / "c", reference_state(10), {"nclasses": 10, **DENSE})
    data = (folder / "net_last.pth").read_bytes()
    (folder / "net_last.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReidQuantError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(folder)


def test_untrained_checkpoint_is_reference_format(tmp_path):
    save_untrained(tmp_path / "u", seed=1, nclasses=20)
    net, opts = load_checkpoint(tmp_path / "u")
    assert opts["nclasses"] == 20


def resnet_state(nclasses=751, stride=2, linear_num=512):
    torch.manual_seed(0)
    return ft_net(nclasses, stride=stride, linear_num=linear_num).state_dict()


def test_resnet50_reference_state_dict_layout():
    state = resnet_state()
    assert state["model.fc.weight"].shape == (1000, 2048)  # the unused ImageNet head
    assert state["model.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["classifier.add_block.0.weight"].shape == (512, 2048)
    assert not any("relu" in key or "skip_add" in key for key in state)  # plain torchvision names


@pytest.mark.parametrize("stride", [1, 2])
def test_resnet50_checkpoint_loads_as_published(tmp_path, stride):
    # the reference project's opts.yaml for its default model: use_dense false, newer flags off
    opts = {"nclasses": 10, "stride": stride, "linear_num": 256, "use_dense": False, "use_swin": False,
            "use_hr": False, "use_convnext": False, "use_efficient": False, "use_NAS": False, "PCB": False,
            "ibn": False, "usam": False, "name": "ft_ResNet50"}
    net, read = load_checkpoint(write_checkpoint(tmp_path / "ft_ResNet50", resnet_state(10, stride, 256), opts))
    assert read["arch"] == "ft_net" and type(net).__name__ == "ft_net"
    assert net.model.layer4[0].conv2.stride == net.model.layer4[0].downsample[0].stride == (stride, stride)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        resnet = net.model
        pooled = resnet.avgpool(resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(
            resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x)))))))))
        expected = net.classifier.add_block(pooled.flatten(1))
        assert torch.allclose(Embedder(net).eval()(x), expected, atol=1e-5)
    assert Embedder(net)(x).shape == (2, 256)


def test_no_network_flag_is_resnet50_as_in_the_reference(tmp_path):
    folder = write_checkpoint(tmp_path / "c", resnet_state(10), {"nclasses": 10})
    assert load_checkpoint(folder)[1]["arch"] == "ft_net"


@pytest.mark.parametrize("flag", sorted(UNSUPPORTED_FLAGS))
def test_other_architectures_are_one_line_naming_the_flag(tmp_path, flag):
    folder = write_checkpoint(tmp_path / "c", resnet_state(10), {"nclasses": 10, "use_dense": False, flag: True})
    with pytest.raises(ReidQuantError, match=rf"opts.yaml: {flag} asks for {UNSUPPORTED_FLAGS[flag]}, which "
                                             rf"reidquant does not build; supported: ft_net_dense"):
        load_checkpoint(folder)


def test_untrained_resnet50_is_reference_format(tmp_path):
    save_untrained(tmp_path / "u", nclasses=5, arch="ft_net")
    opts = yaml.safe_load((tmp_path / "u" / "opts.yaml").read_text())
    assert opts["use_dense"] is False and "arch" not in opts  # the reference project's own flags
    assert type(load_checkpoint(tmp_path / "u")[0]).__name__ == "ft_net"


def test_every_architecture_is_registered_under_its_name():
    from reidquant.architectures import ARCHITECTURES, architecture

    assert [architecture(name).NAME for name in ARCHITECTURES] == list(ARCHITECTURES)
    from reidquant.configcheck import schema_part

    assert schema_part("train")["properties"]["arch"]["enum"] == list(ARCHITECTURES)
