"""What the PyTorch types share: a ``torch.save`` artifact of a state dict, and calibration."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from reidquant.errors import ReidQuantError
from reidquant.model import Embedder, build
from reidquant.safeload import load_tensors


def embedder(opts: dict) -> Embedder:
    return Embedder(build(opts)).eval()


def save_state(path: Path, kind: str, opts: dict, state_dict: dict) -> None:
    torch.save({"type": kind, "opts": opts, "state_dict": state_dict}, path)


def read_state(path: Path, kind: str) -> dict:
    """A ``torch.save`` artifact of this project, checked to hold a variant of type ``kind``.

    Read weights-only: a state dict (quantized tensors and packed-parameter tuples included)
    and plain options, from which ``load`` rebuilds the module; never a pickled module."""
    saved = load_tensors(path, f"a {kind} artifact written by quantize")
    if not isinstance(saved, dict) or "type" not in saved:
        raise ReidQuantError(f"{path}: not a {kind} artifact written by quantize")
    if saved["type"] != kind:
        raise ReidQuantError(f"{path}: holds a {saved['type']} variant, but the spec says type {kind}")
    return saved


def calibrate(model, batches, desc: str) -> None:
    with torch.no_grad():
        for batch in progress(batches, desc):
            model(batch)


def finish(model, device: str, channels_last: bool, compile_: bool, dtype=torch.float32):
    """An eager model placed on ``device``, optionally channels-last and compiled, as a Runner."""
    from reidquant.features import Runner

    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Runner(torch.compile(model) if compile_ else model, device=device, dtype=dtype,
                  channels_last=channels_last, config={"runtime": "torch", "compile": compile_})


def progress(batches, desc: str):
    """Calibration batches with a progress bar, for runtimes that iterate them themselves."""
    return tqdm(batches, desc=desc, unit="batch")
