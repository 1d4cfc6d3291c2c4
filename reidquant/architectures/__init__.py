"""Architectures: one module per network of the reference project, and the registry.

A checkpoint's ``opts.yaml`` decides which one builds, as the reference project's
``test.py`` reads it: ``use_dense: true`` is ``ft_net_dense`` (DenseNet-121), no
other network flag is ``ft_net`` (ResNet-50, the reference project's default). Each
module states, in one place:

- ``NAME`` (the summary's ``arch``), ``BACKBONE_DIM`` and ``MIN_INPUT_SIZE``;
- ``OPTS``: the ``opts.yaml`` flags that select it (what training writes);
- ``network(opts)``: the reference project's module (its class is the module's), with its module names, so that
  published checkpoints load strictly (their unused ImageNet head included);
- ``features(net)``: the backbone up to and including the pooling, as a module;
- ``eager_quantizable(embedder)``: the fp32 embedder rebuilt and fused for eager-mode int8.

``select`` reads only the options, so the workflow can refuse a checkpoint while it plans.

Adding an architecture: a module here, its entry in ``ARCHITECTURES`` and in ``select``,
a parity test against the reference project's test pipeline.
"""

from __future__ import annotations

from types import ModuleType

from reidquant.errors import ReidQuantError

# Names only: the modules import torch, and the workflow selects an architecture while it plans.
ARCHITECTURES = ("ft_net_dense", "ft_net")
# What the workflow trains, and makes untrained weights for, unless train.arch says otherwise.
DEFAULT_ARCH = "ft_net_dense"
# The embedding's size where opts.yaml or train.linear_num does not say (the reference project's).
DEFAULT_LINEAR_NUM = 512

# The reference project's flags for networks this project does not build.
UNSUPPORTED_FLAGS = {"use_swin": "Swin", "use_swinv2": "SwinV2", "use_hr": "HRNet", "use_convnext": "ConvNeXt",
                     "use_efficient": "EfficientNet", "use_NAS": "NAS", "PCB": "PCB", "ibn": "IBN",
                     "usam": "USAM"}


def supported() -> str:
    return "ft_net_dense (use_dense: true) and ft_net (ResNet-50, no network flag)"


def select(opts: dict, where: str) -> str:
    """The name of the architecture ``opts`` asks for; another network stops here, naming its flag."""
    for flag, network in UNSUPPORTED_FLAGS.items():
        if opts.get(flag):
            raise ReidQuantError(f"{where}: {flag} asks for {network}, which reidquant does not build; "
                                 f"supported: {supported()}")
    return "ft_net_dense" if opts.get("use_dense") else "ft_net"


def architecture(name: str) -> ModuleType:
    # Imported here, where a network is built (they import torch); written out, not by name,
    # so that the workflow's code inputs (reidquant.codedeps) see them.
    from reidquant.architectures import ft_net, ft_net_dense

    modules = {module.NAME: module for module in (ft_net_dense, ft_net)}
    if name not in modules:
        raise ReidQuantError(f"architecture {name!r} is not one of {', '.join(ARCHITECTURES)}")
    return modules[name]
