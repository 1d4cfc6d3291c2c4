"""``ft_net_dense``: torchvision's DenseNet-121 with the reference project's embedding head.

The backbone output is ``features`` followed by adaptive average pooling, with no final
ReLU, as in the reference; ``stride: 1`` removes the last transition's down-sampling.
Its checkpoints carry the unused ImageNet head ``model.classifier`` [1000, 1024].
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import densenet121

from reidquant.architectures.head import ClassBlock

NAME = "ft_net_dense"
BACKBONE_DIM = 1024
# The stem and its three 2x2 transition pools need this many pixels per side (measured: 28
# fails in the last pool, 29 runs; the same with stride 1): the config's minimum.
MIN_INPUT_SIZE = 29
OPTS = {"use_dense": True, "name": "ft_net_dense"}
# The backbone's first convolution, by its name in ``features``: what tells the networks' weights apart.
FIRST_LAYER = "conv0"
# Where the embedder's ``features`` sit in the reference module (its checkpoint's key prefix).
FEATURES_IN_REFERENCE = "model.features"


class ft_net_dense(nn.Module):  # noqa: N801 - the reference project's name
    def __init__(self, class_num: int, droprate: float = 0.5, stride: int = 2, linear_num: int = 512):
        super().__init__()
        backbone = densenet121(weights=None)
        backbone.features.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if stride == 1:
            backbone.features.transition3.pool.stride = 1
        self.model = backbone
        self.classifier = ClassBlock(BACKBONE_DIM, class_num, droprate, linear=linear_num)

    def forward(self, x):
        x = self.model.features(x)
        return self.classifier(x.flatten(1))


def network(opts: dict) -> ft_net_dense:
    return ft_net_dense(opts["nclasses"], droprate=opts.get("droprate", 0.5), stride=opts["stride"],
                        linear_num=opts["linear_num"])


def features(net):
    return net.model.features


def eager_quantizable(embedder):
    """DenseNet's BatchNorms come before their convolutions (pre-activation): nothing folds
    but the head's Linear + BatchNorm1d."""
    torch.ao.quantization.fuse_modules(embedder.embedding, [["0", "1"]], inplace=True)
    return embedder
