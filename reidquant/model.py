"""The reference project's networks, their test-time embedder, and their checkpoints.

Module names match Person_reID_baseline_pytorch so that its published ``net_last.pth``
loads strictly. The networks themselves (``ft_net_dense``, ``ft_net``) are in
``reidquant.architectures``, one module each; ``opts.yaml`` says which one a checkpoint
holds. Both end in the same ``ClassBlock`` (``reidquant.architectures.head``):
``classifier.add_block`` is Linear → BatchNorm1d (→ Dropout), the embedding, and
``classifier.classifier`` the identity logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from reidquant.architectures import ARCHITECTURES, DEFAULT_LINEAR_NUM, architecture, select
from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_path, write_text
from reidquant.safeload import load_tensors

REQUIRED_OPTS = ("nclasses",)
DEFAULT_OPTS = {"stride": 2, "linear_num": DEFAULT_LINEAR_NUM, "droprate": 0.5, "h": 256, "w": 128}


class Embedder(nn.Module):
    """The test-time network: the backbone to its pooled feature → Linear → BatchNorm1d (512-d)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.features = architecture(type(net).__name__).features(net)
        self.embedding = nn.Sequential(*[m for m in net.classifier.add_block if not isinstance(m, nn.Dropout)])

    @classmethod
    def from_parts(cls, features: nn.Module, embedding: nn.Module) -> Embedder:
        """An embedder of given parts (a backbone rebuilt for quantization, say)."""
        embedder = cls.__new__(cls)
        nn.Module.__init__(embedder)
        embedder.features, embedder.embedding = features, embedding
        return embedder

    def forward(self, x):
        return self.embedding(self.features(x).flatten(1))


def reference_name(layer: str, arch: str) -> str:
    """A module's name in the embedder (``features.conv0``, ``embedding.0``) as the reference
    project's network names it (``model.features.conv0``, ``classifier.add_block.0``)."""
    part, _, rest = layer.partition(".")
    prefix = {"features": architecture(arch).FEATURES_IN_REFERENCE, "embedding": "classifier.add_block"}.get(part)
    return f"{prefix}.{rest}" if prefix and rest else layer


def arch_of(opts: dict) -> str:
    """The architecture a checkpoint's options ask for (``read_opts`` records it as ``arch``)."""
    return opts.get("arch") or select(opts, "opts")


def read_opts(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ReidQuantError(f"{path}: opts.yaml not found (it must sit next to net_last.pth)")
    try:
        opts = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ReidQuantError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(opts, dict):
        raise ReidQuantError(f"{path}: expected a mapping of training options")
    for key in REQUIRED_OPTS:
        if key not in opts:
            raise ReidQuantError(f"{path}: missing field {key!r}")
    merged = {**DEFAULT_OPTS, **opts, "arch": select(opts, str(path))}
    if isinstance(merged["stride"], bool) or merged["stride"] not in (1, 2):
        raise ReidQuantError(f"{path}: stride must be 1 or 2, got {merged['stride']!r}")
    for key in ("nclasses", "linear_num"):
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < 1:
            raise ReidQuantError(f"{path}: {key} must be a positive integer, got {merged[key]!r}")
    droprate = merged["droprate"]
    if isinstance(droprate, bool) or not isinstance(droprate, (int, float)) or not 0 <= droprate < 1:
        raise ReidQuantError(f"{path}: droprate must be a number from 0 to below 1 (the dropout before the "
                             f"classifier), got {droprate!r}")
    return merged


def write_opts(path: Path, opts: dict) -> None:
    """The reference project's ``opts.yaml``: its flags say the architecture, not our ``arch``."""
    write_text(path, yaml.safe_dump({k: v for k, v in opts.items() if k != "arch"}, sort_keys=True))


def build(opts: dict) -> nn.Module:
    """The network ``opts`` describes (the reference project's module, untrained)."""
    return architecture(arch_of(opts)).network({**DEFAULT_OPTS, **opts})


def holds_arch(state: dict) -> str | None:
    """The architecture a state dict's keys belong to, where they say (the backbone's first
    convolution is named differently in each), or None."""
    for name in ARCHITECTURES:
        if f"{architecture(name).FEATURES_IN_REFERENCE}.{architecture(name).FIRST_LAYER}.weight" in state:
            return name
    return None


def load_state_dict_strict(net: nn.Module, state: dict, where: str, opts_path: str = "opts.yaml") -> None:
    """Strict load with one line naming the first key or shape that does not match; weights of
    another network than ``opts.yaml`` names are said as such, naming its flag."""
    expected = net.state_dict()
    held, built = holds_arch(state), holds_arch(expected)
    if held and built and held != built:
        flag = "true" if held == "ft_net_dense" else "false"
        raise ReidQuantError(f"{where}: holds {held} weights, but {opts_path} asks for {built}; set "
                             f"use_dense: {flag} in {opts_path}, or use the checkpoint these options belong to")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise ReidQuantError(f"{where}: missing key {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise ReidQuantError(f"{where}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all)")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ReidQuantError(
                f"{where}: key {key!r} has shape {list(state[key].shape)} in the checkpoint but "
                f"{list(value.shape)} in the model (check opts.yaml)")
    net.load_state_dict(state, strict=True)


def load_checkpoint(folder: Path) -> tuple[nn.Module, dict]:
    """Load ``net_last.pth`` + ``opts.yaml`` from a reference-format checkpoint folder."""
    folder = Path(folder)
    opts = read_opts(folder / "opts.yaml")
    weights = folder / "net_last.pth"
    if not weights.exists():
        raise ReidQuantError(f"{weights}: checkpoint not found")
    state = load_tensors(weights, "a readable PyTorch checkpoint")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ReidQuantError(f"{weights}: expected a state_dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    net = build(opts)
    load_state_dict_strict(net, state, str(weights), str(folder / "opts.yaml"))
    return net.eval(), opts


def untrained(seed: int = 0, nclasses: int = 751, arch: str = "ft_net_dense") -> tuple[nn.Module, dict]:
    """A seeded random network (no ImageNet weights: none can be downloaded here)."""
    torch.manual_seed(seed)
    opts = {**DEFAULT_OPTS, **architecture(arch).OPTS, "nclasses": nclasses, "arch": arch}
    return build(opts).eval(), opts


def save_untrained(folder: Path, seed: int = 0, nclasses: int = 751, arch: str = "ft_net_dense") -> None:
    """Write seeded random weights as a reference-format checkpoint folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net, opts = untrained(seed, nclasses, arch)
    with atomic_path(folder / "net_last.pth") as tmp:
        torch.save(net.state_dict(), tmp)
    write_opts(folder / "opts.yaml", opts)
