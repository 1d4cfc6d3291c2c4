"""Which layers cost an int8 variant its fidelity: each quantized convolution's and linear
layer's SQNR against fp32 (PT2E), or the val cos_mean gained by leaving it in float
(``cos_mean_gain``: OpenVINO's quantizer groups, and PT2E's five lowest-SQNR layers),
measured on the prepared layout's ``val`` images, on the artifact a variant's build wrote.

``val`` (one image per training identity) is never calibrated on and never scored: what it
says can guide a choice without touching the test split. The SQNR of a layer is that of its
output in the quantized network against the same layer's output in the float network, both
fed the same image (errors upstream included, as a deployer's network propagates them):
10·log10(Σ ref² / Σ (ref − quantized)²) over every val image. Lower is worse; each halving of
the error's amplitude adds about 6 dB.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path


from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_path
from reidquant.market import list_prepared, spread

# The numeric debugger runs both networks eagerly with every node's output kept for a batch:
# this many val images (spread over the identities) bound its time and memory.
MAX_IMAGES = 64
BATCH = 4
COLUMNS = ["index", "layer", "reference_name", "part", "op", "sqnr_db", "cos_mean_gain"]
WEIGHTED_OPS = {"conv2d", "linear"}


def val_paths(data_root: Path, count: int = MAX_IMAGES) -> list[Path]:
    """Up to ``count`` images of ``val``, spread evenly over it (identities in sorted order)."""
    return spread(list_prepared(data_root, "val"), count)


def part_of(layer: str) -> str:
    """The stretch of the network a layer is in, for grouping: ``conv0``, ``denseblock2``,
    ``transition1``, ``layer3``, ``embedding``, ..."""
    names = layer.split(".")
    if names[0] == "embedding":
        return "embedding"
    return names[1] if len(names) > 1 else names[0]


def _op_name(node) -> str | None:
    target = getattr(node.target, "__name__", str(node.target))
    name = target.split(".")[0]
    return name if name in WEIGHTED_OPS else None


def _owner(node) -> str:
    """The module a graph node was traced from, by its path in the exported module."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return node.name
    path = list(stack.values())[-1][0]
    # torch.export writes paths of nested modules as L['self'].features.conv0 or as plain
    # dotted names, depending on how it reached them.
    return re.sub(r"^L\['self'\]\.?", "", path).replace("._modules['", ".").replace("']", "")


def weighted_nodes(graph_module) -> dict:
    """Each convolution and linear node of an exported (or converted) graph by its layer's name."""
    return {_owner(node): node for node in graph_module.graph.nodes
            if node.op == "call_function" and _op_name(node) is not None}


def layer_outputs(graph_module, batch, nodes: dict) -> dict:
    """The output of each of ``nodes`` (layer -> node of ``graph_module``) on ``batch``."""
    import torch

    wanted = {node: layer for layer, node in nodes.items()}
    found = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            if node in wanted:
                found[wanted[node]] = value.detach().double()
            return value

    Recorder(graph_module).run(batch)
    return found


def layer_sqnr(float_graph, quantized, batches, reference_name=lambda layer: layer) -> list[dict]:
    """Per convolution and linear layer, in network order: the SQNR of its output in
    ``quantized`` (a converted PT2E graph, or its saved program loaded) against the same
    layer's output in ``float_graph`` (the exported float network, its BatchNorms folded as
    quantization folds them) on ``batches``. Layers are matched by their module's name, which
    survives saving the program; both graphs are fed the same image, so each layer's error
    includes what earlier layers passed on, as the deployed network propagates it."""
    import torch

    reference, compared = weighted_nodes(float_graph), weighted_nodes(quantized)
    if not reference:
        raise ReidQuantError("per-layer sensitivity: the float graph has no convolution or linear layer to compare")
    pairs = [layer for layer in reference if layer in compared]
    signal = {layer: 0.0 for layer in pairs}
    noise = dict(signal)
    with torch.no_grad():
        for batch in batches:
            ref = layer_outputs(float_graph, batch, {layer: reference[layer] for layer in pairs})
            out = layer_outputs(quantized, batch, {layer: compared[layer] for layer in pairs})
            for layer in pairs:
                signal[layer] += float((ref[layer] * ref[layer]).sum())
                noise[layer] += float(((ref[layer] - out[layer]) ** 2).sum())
    layers = [(layer, layer, _op_name(node)) for layer, node in reference.items()]
    return _rows(layers, signal, noise, reference_name)


def weighted_layers(module) -> list[str]:
    """Names of a module's convolutions and linear layers, in registration (for these networks, forward) order."""
    from torch import nn

    return [name for name, child in module.named_modules() if isinstance(child, (nn.Conv2d, nn.Linear))]


def _rows(layers, signal: dict, noise: dict, reference_name) -> list[dict]:
    """One row per compared layer, in network order (``index`` counts every weighted layer)."""
    rows = []
    for index, (key, layer, op) in enumerate(layers):
        if key not in signal:
            continue  # not in the quantized network: nothing to compare
        sqnr = math.inf if noise[key] == 0.0 else 10 * math.log10(signal[key] / noise[key])
        rows.append({"index": index, "layer": layer, "reference_name": reference_name(layer), "part": part_of(layer),
                     "op": op, "sqnr_db": sqnr})
    return rows


def most_sensitive(rows: list[dict], count: int = 5) -> list[dict]:
    """The ``count`` lowest-SQNR rows; for rows measured only by what float gains (OpenVINO's),
    the largest gains."""
    if any(row.get("sqnr_db") is not None for row in rows):
        return sorted(rows, key=lambda row: math.inf if row.get("sqnr_db") is None else row["sqnr_db"])[:count]
    return sorted(rows, key=lambda row: -(row.get("cos_mean_gain") or 0.0))[:count]


def write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            sqnr, gain = row.get("sqnr_db"), row.get("cos_mean_gain")
            writer.writerow({**row, "sqnr_db": "" if sqnr is None else f"{sqnr:.3f}",
                             "cos_mean_gain": "" if gain is None else f"{gain:.6g}"})


def read_csv(path: Path) -> list[dict]:
    """The rows ``write_csv`` wrote (empty measures read back as None)."""
    with open(path, newline="") as handle:
        return [{"index": int(row["index"]), "layer": row["layer"], "reference_name": row["reference_name"],
                 "part": row["part"], "op": row["op"],
                 **{key: float(row[key]) if row[key] else None for key in ("sqnr_db", "cos_mean_gain")}}
                for row in csv.DictReader(handle)]


def ranking(rows: list[dict]) -> list[str]:
    """The layers of ``rows``, most sensitive first (``most_sensitive``)."""
    return [row["layer"] for row in most_sensitive(rows, len(rows))]
