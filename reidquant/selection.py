"""The metrics a budgeted build is chosen by, measured on training identities only.

``val`` (one image per training identity) is never calibrated on (calibration reads
``train``) and the test split is never read. Two metrics, higher is better:

- ``cos_mean``: the mean cosine of each val image's embedding to its fp32 embedding
  (label-free; 1.0 for fp32 itself);
- ``mAP``: val images as queries against ``train`` as the gallery, with the Market-1501
  protocol, in points (x100, as ``mAP_delta`` is).

Embeddings are made as the extraction makes them: the image and its mirror image, summed and
L2-normalised. A drop is the fp32 value minus the variant's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidquant.errors import ReidQuantError
from reidquant.market import labels_and_cameras, list_prepared

METRICS = ("cos_mean", "mAP")
BATCH = 32


@dataclass
class SelectionSet:
    """Val images (and, for mAP, the train gallery), with their fp32 embeddings."""

    metric: str
    val: list  # batches of val images
    gallery: list  # batches of train images; empty for cos_mean
    labels: tuple  # (val identities, val cameras, train identities, train cameras)
    reference: np.ndarray  # fp32 embeddings of the val images, then of the train images
    reference_value: float
    ms: tuple = (1,)  # the extraction's scales (extract.ms)

    def embed(self, forward, batches) -> np.ndarray:
        """Embeddings of ``batches`` by ``forward`` as the extraction makes them."""
        return embed_batches(forward, batches, self.ms)

    @property
    def num_val(self) -> int:
        return sum(len(batch) for batch in self.val)

    def value(self, features: np.ndarray, val_indices=None) -> tuple[float, list[float] | None]:
        """The metric of ``features``: rows of the val images ``val_indices`` (every one by
        default), then, for mAP, the train gallery's rows. For cos_mean, also each image's cosine."""
        chosen = np.arange(self.num_val) if val_indices is None else np.asarray(val_indices, dtype=int)
        val = features[:len(chosen)]
        if self.metric == "cos_mean":
            per_image = np.sum(val * self.reference[chosen], axis=1)
            return float(per_image.mean()), per_image.tolist()
        val_label, val_cam, train_label, train_cam = self.labels
        labels = (val_label[chosen], val_cam[chosen], train_label, train_cam)
        return map_points(val, features[len(chosen):], labels), None


def map_points(val_f: np.ndarray, train_f: np.ndarray, labels: tuple) -> float:
    from reidquant.evaluate import evaluate

    val_label, val_cam, train_label, train_cam = labels
    return 100 * evaluate(val_f, val_label, val_cam, train_f, train_label, train_cam)["mAP"]


def embed_batches(forward, batches, ms=(1,)) -> np.ndarray:
    """Embeddings of ``batches`` by ``forward`` (a batch in, a batch out), made as the extraction
    makes them (``reidquant.features.embed``: image and mirror image at every scale of ``ms``,
    summed, L2-normalised)."""
    import torch

    from reidquant.features import embed

    with torch.inference_mode():
        rows = [embed(forward, batch, ms).float().numpy() for batch in batches]
    return np.concatenate(rows).astype(np.float32)


def cosine_set(batches: list, fp32_forward, ms=(1,)) -> SelectionSet:
    """cos_mean on ``batches`` of val images already loaded."""
    chosen = SelectionSet("cos_mean", list(batches), [], (), embed_batches(fp32_forward, batches, ms), 0.0,
                          tuple(ms))
    chosen.reference_value = chosen.value(chosen.reference)[0]
    return chosen


def selection_set(metric: str, data_root: Path, height: int, width: int, fp32_forward, ms=(1,)) -> SelectionSet:
    """What ``metric`` is measured on, with fp32's embeddings by ``fp32_forward``."""
    from reidquant.data import load_batch

    if metric not in METRICS:
        raise ReidQuantError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    val_paths = list_prepared(data_root, "val")
    train_paths = list_prepared(data_root, "train") if metric == "mAP" else []

    def batches(paths):
        return [load_batch(paths[i:i + BATCH], height, width) for i in range(0, len(paths), BATCH)]

    val, gallery = batches(val_paths), batches(train_paths)
    labels = (*map(np.array, labels_and_cameras(val_paths)), *map(np.array, labels_and_cameras(train_paths))) \
        if train_paths else ()
    reference = embed_batches(fp32_forward, val + gallery, ms)
    chosen = SelectionSet(metric, val, gallery, labels, reference, 0.0, tuple(ms))
    chosen.reference_value = chosen.value(reference)[0]
    return chosen


def meets_max_drop(drop: float, control: dict) -> bool:
    """Whether a val drop keeps ``accuracy_control``'s ``max_drop`` (float rounding forgiven)."""
    return drop <= control["max_drop"] + 1e-12


def budget_record(name: str, control: dict, fp32_value: float, value: float, float_count: int,
                  limit_note: str = "", tried_by: str = "") -> dict:
    """What a budgeted build reached on val, for ``quantize.json``; a budget it did not meet is
    said in one warning line."""
    import sys

    drop = fp32_value - value
    met = meets_max_drop(drop, control)
    if not met:
        print(f"warning: variant {name}: accuracy_control.max_drop {control['max_drop']} not met on val: "
              f"{control['metric']} drops {drop:.6g} with {float_count} layer(s) in float{limit_note}; built the "
              f"most faithful setting {tried_by}tried", file=sys.stderr)
    # JSON has no infinity: a budget without a limit is recorded as null.
    limit = control["max_drop"] if math.isfinite(control["max_drop"]) else None
    return {**control, "max_drop": limit, "fp32_value": fp32_value, "value": value, "drop": drop, "met": met}
