"""``ft_net``: torchvision's ResNet-50 with the reference project's embedding head, its default.

``stride: 1`` sets the stride of ``layer4[0].conv2`` and of its downsample convolution to 1
(a 16x8 final map at 256x128 instead of 8x4). The pooled 2048-d feature goes through the
same ``ClassBlock`` as ``ft_net_dense``. Its checkpoints carry the unused ImageNet head
``model.fc`` [1000, 2048].
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.quantization import resnet50

from reidquant.architectures.head import ClassBlock

NAME = "ft_net"
BACKBONE_DIM = 2048
# The stem's stride-2 convolution and pooling and three stride-2 stages, all padded: any size runs.
MIN_INPUT_SIZE = 1
OPTS = {"use_dense": False, "name": "ft_ResNet50"}
STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
# The backbone's first convolution, by its name in ``features``: what tells the networks' weights apart.
FIRST_LAYER = "conv1"
# Where the embedder's ``features`` sit in the reference module (its checkpoint's key prefix).
FEATURES_IN_REFERENCE = "model"


def _backbone(resnet, stride: int):
    if stride == 1:
        resnet.layer4[0].downsample[0].stride = (1, 1)
        resnet.layer4[0].conv2.stride = (1, 1)
    resnet.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    return resnet


class ft_net(nn.Module):  # noqa: N801 - the reference project's name
    """The reference ``ft_net``. Its ResNet-50 is torchvision's quantizable one: the same
    parameters and arithmetic, but each block's ReLUs are separate modules and its residual
    addition one too, which eager int8 needs and PT2E's x86 quantizer matches (a ReLU module
    called three times in a block makes one partition with three outputs, which it refuses)."""

    def __init__(self, class_num: int, droprate: float = 0.5, stride: int = 2, linear_num: int = 512):
        super().__init__()
        self.model = _backbone(resnet50(weights=None, quantize=False), stride)
        self.classifier = ClassBlock(BACKBONE_DIM, class_num, droprate, linear=linear_num)

    def forward(self, x):
        for stage in STAGES:
            x = getattr(self.model, stage)(x)
        return self.classifier(x.flatten(1))


def network(opts: dict) -> ft_net:
    return ft_net(opts["nclasses"], droprate=opts.get("droprate", 0.5), stride=opts["stride"],
                  linear_num=opts["linear_num"])


def features(net):
    """The reference forward up to the pooling: conv1, bn1, relu, maxpool, layer1-4, avgpool."""
    return nn.Sequential(OrderedDict((name, getattr(net.model, name)) for name in STAGES))


def eager_quantizable(embedder):
    """Every conv-bn(-relu) folded, as torchvision's ``fuse_model`` does, and the head's
    Linear + BatchNorm1d."""
    torch.ao.quantization.fuse_modules(embedder.features, [["conv1", "bn1", "relu"]], inplace=True)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for block in getattr(embedder.features, stage):
            block.fuse_model(is_qat=False)
    torch.ao.quantization.fuse_modules(embedder.embedding, [["0", "1"]], inplace=True)
    return embedder
