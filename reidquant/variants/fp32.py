"""``fp32``: the reference every row is compared against; eager PyTorch, no tricks."""

from __future__ import annotations

NAME = "fp32"
ARTIFACT = WEIGHTS = "model.pt"


def calibrated(spec: dict) -> bool:
    return False


def unsupported_reason(spec: dict, device: str) -> str | None:
    return None


def precision(spec: dict) -> str:
    return "fp32"


def runtime(spec: dict) -> str:
    return "torch+inductor" if spec["compile"] else "torch"


def build(name, spec, embedder, opts, example, calibration, path) -> None:
    from reidquant.variants.torch_state import save_state

    save_state(path, NAME, opts, embedder.state_dict())


def load(path, spec, device, name, trust_compiled=False):
    from reidquant.variants.torch_state import embedder, finish, read_state

    saved = read_state(path, NAME)
    model = embedder(saved["opts"])
    model.load_state_dict(saved["state_dict"])
    # GPUs run convolutions fastest channels-last; on CPUs the reference stays as published.
    return finish(model, device, spec["channels_last"] or device == "cuda", spec["compile"])
