"""``half``: the whole network in bfloat16 or float16, weights and activations."""

from __future__ import annotations

from reidquant.devices import cpu_has_bf16

NAME = "half"
ARTIFACT = WEIGHTS = "model.pt"
LABELS = {"bfloat16": "bf16", "float16": "fp16"}


def calibrated(spec: dict) -> bool:
    return False


def unsupported_reason(spec: dict, device: str) -> str | None:
    if device == "cpu" and spec["dtype"] == "float16":
        return "float16 inference is for GPUs; CPUs have no fast fp16 convolutions"
    return None


def hardware_reason(spec: dict, device: str) -> str | None:
    if device == "cpu" and not cpu_has_bf16():
        return "this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated"
    return None


def precision(spec: dict) -> str:
    return LABELS[spec["dtype"]]


def runtime(spec: dict) -> str:
    return "torch+inductor" if spec["compile"] else "torch"


def _dtype(spec: dict):
    import torch

    return getattr(torch, spec["dtype"])


def build(name, spec, embedder, opts, example, calibration, path) -> None:
    from reidquant.variants.torch_state import save_state

    dtype = _dtype(spec)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in embedder.state_dict().items()}
    save_state(path, NAME, opts, state)


def load(path, spec, device, name, trust_compiled=False):
    from reidquant.variants.torch_state import embedder, finish, read_state

    saved = read_state(path, NAME)
    dtype = _dtype(spec)
    model = embedder(saved["opts"]).to(dtype)
    model.load_state_dict(saved["state_dict"])
    return finish(model, device, spec["channels_last"] or device == "cuda", spec["compile"], dtype=dtype)
