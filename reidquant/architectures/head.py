"""The reference project's ``ClassBlock``: the embedding head both architectures end in."""

from __future__ import annotations

from torch import nn


def weights_init_kaiming(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out")
        nn.init.constant_(module.bias, 0.0)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


def weights_init_classifier(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.001)
        nn.init.constant_(module.bias, 0.0)


class ClassBlock(nn.Module):
    """Linear → BatchNorm1d → Dropout (the embedding), then the identity classifier."""

    def __init__(self, input_dim: int, class_num: int, droprate: float, linear: int = 512):
        super().__init__()
        self.add_block = nn.Sequential(nn.Linear(input_dim, linear), nn.BatchNorm1d(linear))
        if droprate > 0:
            self.add_block.append(nn.Dropout(p=droprate))
        self.add_block.apply(weights_init_kaiming)
        self.classifier = nn.Sequential(nn.Linear(linear, class_num))
        self.classifier.apply(weights_init_classifier)

    def forward(self, x):
        return self.classifier(self.add_block(x))
