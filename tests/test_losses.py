import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidquant.losses import L2RegularizedBCELoss


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 1),
    )


def test_value_matches_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model[2].weight.copy_(torch.tensor([[0.5, -0.5]]))
    prediction = torch.tensor([0.9, 0.2, 0.0, 1.0])  # 0 and 1 get clipped
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = L2RegularizedBCELoss(model, l2_lambda=0.1)(prediction, target)
    eps = 1e-7
    upper = float(torch.tensor(1 - eps, dtype=torch.float32))  # 1 - 1e-7 as float32 stores it
    bce = -(math.log(0.9) + math.log(0.8) + math.log(eps) + math.log(1 - upper)) / 4
    l2 = (1 + 4 + 9 + 16 + 0.25 + 0.25) / 2
    assert loss.item() == pytest.approx(bce + 0.1 * l2, rel=1e-5)


def test_lambda_zero_is_plain_bce():
    model = small_cnn()
    p = torch.rand(16)
    t = (torch.rand(16) > 0.5).float()
    loss = L2RegularizedBCELoss(model, l2_lambda=0.0)(p, t)
    assert loss.item() == pytest.approx(F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), t).item(), rel=1e-6)


def test_gradients_penalise_only_conv_and_linear_weights():
    torch.manual_seed(0)
    model = small_cnn()
    x = torch.randn(8, 1, 12, 12)
    t = (torch.rand(8) > 0.5).float()
    lam = 0.3

    def grads(l2_lambda):
        model.zero_grad()
        L2RegularizedBCELoss(model, l2_lambda, from_logits=True)(model(x).squeeze(1), t).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    data, total = grads(0.0), grads(lam)
    params = dict(model.named_parameters())
    for name in data:
        module = model[int(name.split(".")[0])]
        if name.endswith("weight") and isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.allclose(total[name], data[name] + lam * params[name], atol=1e-6), name
        else:  # biases and BatchNorm parameters carry no penalty
            assert torch.allclose(total[name], data[name], atol=1e-7), name


def test_logits_form_matches_probabilities_and_is_stable():
    model = small_cnn()
    logits = torch.linspace(-8, 8, 33)
    t = (torch.arange(33) % 2).float()
    a = L2RegularizedBCELoss(model, 0.01, from_logits=True)(logits, t)
    b = L2RegularizedBCELoss(model, 0.01, from_logits=False)(torch.sigmoid(logits), t)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    huge = torch.tensor([1e4, -1e4, 500.0])
    out = L2RegularizedBCELoss(model, 0.01, from_logits=True)(huge, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.isfinite(out)


def test_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="l2_lambda"):
        L2RegularizedBCELoss(small_cnn(), l2_lambda=-0.1)


def test_loss_does_not_own_model_parameters():
    assert list(L2RegularizedBCELoss(small_cnn()).parameters()) == []


def test_mixed_precision_and_device():
    model = small_cnn()
    x = torch.randn(4, 1, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x).squeeze(1)
        loss = L2RegularizedBCELoss(model, 0.01, from_logits=True)(out, torch.ones(4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    if torch.cuda.is_available():
        model = model.cuda()
        loss = L2RegularizedBCELoss(model, 0.01, from_logits=True)(model(x.cuda()).squeeze(1), torch.ones(4).cuda())
        assert loss.device.type == "cuda"


def bright_square_task(n, generator):
    """Images with a bright square in the top half (label 1) or the bottom half (label 0)."""
    x = torch.rand(n, 1, 12, 12, generator=generator) * 0.3
    y = (torch.rand(n, generator=generator) > 0.5).float()
    for i in range(n):
        row = int(torch.randint(0, 3, (1,), generator=generator)) + (0 if y[i] else 6)
        col = int(torch.randint(0, 8, (1,), generator=generator))
        x[i, 0, row:row + 3, col:col + 3] = 1.0
    return x, y


def train(l2_lambda):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 144, 1))
    loss_fn = L2RegularizedBCELoss(model, l2_lambda, from_logits=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = bright_square_task(256, g)
    for _ in range(60):
        optimizer.zero_grad()
        loss_fn(model(x).squeeze(1), y).backward()
        optimizer.step()
    x_test, y_test = bright_square_task(256, g)
    accuracy = ((model(x_test).squeeze(1) > 0).float() == y_test).float().mean().item()
    norm = sum(w.pow(2).sum() for w in (model[0].weight, model[3].weight)).item()
    return accuracy, norm


def test_small_cnn_learns_and_ends_with_smaller_weights():
    accuracy, norm = train(0.01)
    plain_accuracy, plain_norm = train(0.0)
    assert accuracy > 0.9
    assert plain_accuracy > 0.9
    assert norm < plain_norm
