"""``eager_int8``: the seed's static PTQ recipe, kept faithfully as a baseline.

Eager mode, QuantStub/DeQuantStub around the model, what the architecture can fuse fused
(the head's Linear+BatchNorm1d; on ResNet-50 also every conv-bn(-relu)),
``default_qconfig`` (per-tensor min/max), calibration on a handful of training images.
Run by fbgemm, the engine ``default_qconfig`` (7-bit activations) is made for: PyTorch's
default ``x86`` engine sends it to oneDNN on CPUs with AMX, where an untrained ResNet-50's
embedding fell to cosine 0.79 to fp32 (0.997 by fbgemm, the same model and images).
"""

from __future__ import annotations

from reidquant.variants.base import stage

NAME = "eager_int8"
ARTIFACT = WEIGHTS = "model.pt"
ENGINE = "fbgemm"


def calibrated(spec: dict) -> bool:
    return True


def unsupported_reason(spec: dict, device: str) -> str | None:
    return "fbgemm int8 kernels run on CPUs only" if device == "cuda" else None


def resolve(spec: dict, isa: str) -> tuple[dict, dict]:
    """The seed's guard, whatever the CPU: ``default_qconfig`` ranges activations on 7 bits."""
    return spec, {"option": "reduce_range", "setting": "default_qconfig", "used": True, "cpu_isa": isa}


def precision(spec: dict) -> str:
    return "int8 eager per-tensor"


def runtime(spec: dict) -> str:
    return f"torch {ENGINE}"


def _prepared(embedder, arch: str):
    import torch
    from torch import nn

    from reidquant.architectures import architecture

    class SeedQuantWrapper(nn.Module):
        """The seed's wrapper: quantize the input, run the model, dequantize the output."""

        def __init__(self, model: nn.Module):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.model = model
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.model(self.quant(x)))

    torch.backends.quantized.engine = ENGINE
    wrapped = SeedQuantWrapper(architecture(arch).eager_quantizable(embedder)).eval()
    wrapped.qconfig = torch.ao.quantization.default_qconfig
    torch.ao.quantization.prepare(wrapped, inplace=True)
    return wrapped


def build(name, spec, embedder, opts, example, calibration, path) -> None:
    import torch

    from reidquant.model import arch_of
    from reidquant.variants.torch_state import calibrate, save_state

    with stage(name, "preparation"):
        model = _prepared(embedder, arch_of(opts))
    with stage(name, "calibration"):
        calibrate(model, calibration, desc=f"calibrate {name}")
    with stage(name, "conversion"):
        torch.ao.quantization.convert(model, inplace=True)
    save_state(path, NAME, opts, model.state_dict())


def load(path, spec, device, name, trust_compiled=False):
    import torch

    from reidquant.model import arch_of
    from reidquant.variants.torch_state import embedder, finish, read_state

    saved = read_state(path, NAME)
    model = _prepared(embedder(saved["opts"]), arch_of(saved["opts"]))
    torch.ao.quantization.convert(model, inplace=True)
    model.load_state_dict(saved["state_dict"])
    return finish(model, device, channels_last=False, compile_=False)
