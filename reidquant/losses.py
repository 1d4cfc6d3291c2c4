"""Question 3: binary cross-entropy plus L2 regularisation of conv and linear weights.

The seed's Keras loss added ``lambda * l2_loss(kernel)`` (TensorFlow's ``l2_loss`` is
``sum(w**2) / 2``) for every Conv2D and Dense kernel, reading the model from a global
variable. Here the model is an explicit argument, only the weights of Conv1d/2d/3d and
Linear modules are penalised (never biases, never normalisation layers), and the data
term matches Keras: probabilities clipped to [1e-7, 1 - 1e-7], mean over all elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-7
PENALISED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, PENALISED) and m.weight is not None]


class L2RegularizedBCELoss(nn.Module):
    """``loss(prediction, target) = BCE(prediction, target) + l2_lambda * sum(w**2) / 2``."""

    def __init__(self, model: nn.Module, l2_lambda: float = 0.01, from_logits: bool = False):
        super().__init__()
        if l2_lambda < 0:
            raise ValueError(f"l2_lambda must be >= 0, got {l2_lambda}")
        # A plain attribute, not a submodule: the loss must not adopt the model's parameters.
        self.__dict__["model"] = model
        self.l2_lambda = float(l2_lambda)
        self.from_logits = from_logits

    def data_term(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prediction, target = prediction.float(), target.float()
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(prediction, target)
        p = prediction.clamp(EPSILON, 1 - EPSILON)
        return -(target * torch.log(p) + (1 - target) * torch.log1p(-p)).mean()

    def penalty(self) -> torch.Tensor:
        weights = penalised_weights(self.model)
        if not weights:
            return torch.zeros(())
        return sum(w.float().pow(2).sum() for w in weights) / 2

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.data_term(prediction, target)
        if self.l2_lambda == 0:
            return loss
        return loss + self.l2_lambda * self.penalty().to(loss.device)
