"""Our fp32 features against the reference project's test pipeline, image by image."""

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from reidquant.features import Runner, extract_dataset
from reidquant.market import list_prepared, prepare
import pytest

from reidquant.architectures.ft_net import ft_net
from reidquant.architectures.ft_net_dense import ft_net_dense
from reidquant.model import Embedder
from reidquant.synth import SynthSizes, generate


def reference_features(model, paths):
    """As the reference test.py: bicubic 256x128, ImageNet normalisation, image + flipped, L2."""
    model.classifier.classifier = nn.Sequential()
    model.eval()
    transform = transforms.Compose([
        transforms.Resize((256, 128), interpolation=3),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    rows = []
    with torch.no_grad():
        for path in paths:
            img = transform(Image.open(path).convert("RGB")).unsqueeze(0)
            ff = torch.zeros(1, 512)
            for i in range(2):
                if i == 1:
                    img = img.index_select(3, torch.arange(img.size(3) - 1, -1, -1).long())
                ff += model(img)
            rows.append(ff / torch.norm(ff, p=2, dim=1, keepdim=True))
    return torch.cat(rows).numpy()


@pytest.mark.parametrize("network, stride", [(ft_net_dense, 2), (ft_net, 2), (ft_net, 1)])
def test_fp32_features_match_reference_pipeline(tmp_path, network, stride):
    sizes = SynthSizes.from_settings(dict(train_ids=2, test_ids=2, images_per_camera=1, cameras_per_id=2,
                                          distractors=1, junk=1, multi_query_per_query=0))
    generate(tmp_path / "raw", sizes, progress=False)
    prepare(tmp_path / "raw", tmp_path / "pytorch")
    torch.manual_seed(0)
    net = network(751, stride=stride).eval()
    # running statistics as a trained network has them, so BatchNorm is not the identity
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    mat, _ = extract_dataset(Runner(Embedder(net).eval()), tmp_path / "pytorch", 256, 128, batch_size=3,
                             workers=0, ms=(1,))
    for part in ("query", "gallery"):
        expected = reference_features(net, list_prepared(tmp_path / "pytorch", part))
        cosine = np.sum(mat[f"{part}_f"] * expected, axis=1)
        assert mat[f"{part}_f"].shape == expected.shape
        assert cosine.min() >= 0.9999, (part, cosine.min())
