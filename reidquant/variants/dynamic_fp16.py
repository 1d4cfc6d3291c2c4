"""``dynamic_fp16``: the seed's ``quantize_dynamic(model, {Linear}, float16)``.

It touches only the 512-d head, which is why it changes neither size nor speed.
"""

from __future__ import annotations

from reidquant.variants.base import stage

NAME = "dynamic_fp16"
ARTIFACT = WEIGHTS = "model.pt"


def calibrated(spec: dict) -> bool:
    return False


def unsupported_reason(spec: dict, device: str) -> str | None:
    return "fbgemm dynamic quantization runs on CPUs only" if device == "cuda" else None


def precision(spec: dict) -> str:
    return "fp32 + fp16 Linear"


def runtime(spec: dict) -> str:
    return "torch"


def _quantized(model):
    import torch
    from torch import nn

    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.float16)


def build(name, spec, embedder, opts, example, calibration, path) -> None:
    from reidquant.variants.torch_state import save_state

    with stage(name, "dynamic quantization"):
        model = _quantized(embedder)
    save_state(path, NAME, opts, model.state_dict())


def load(path, spec, device, name, trust_compiled=False):
    from reidquant.variants.torch_state import embedder, finish, read_state

    saved = read_state(path, NAME)
    model = _quantized(embedder(saved["opts"]))
    model.load_state_dict(saved["state_dict"])
    return finish(model, device, channels_last=False, compile_=False)
