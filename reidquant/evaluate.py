"""Market-1501 evaluation: CMC, official (trapezoid) mAP, non-interpolated mAP, mINP, fidelity.

The protocol (DESIGN.md): for each query the gallery is ranked by cosine score; gallery
images of the same identity and camera, and every image labelled -1, are junk and removed
from that query's ranking; true matches are the same identity seen by another camera;
identity 0 (distractors) only ever counts as a wrong match. Queries without a true match
are skipped and counted out of ``num_valid_query``.

`evaluate` ranks only each query's same-identity images (counting the gallery scores above
them); `evaluate_per_query` is the plain loop that sorts the gallery, drops junk and walks the
hits, one query at a time. They agree to float rounding, and the loop is what tests and the
benchmark compare the fast path against.
"""

from __future__ import annotations

import numpy as np
import scipy.io
import torch

from reidquant.errors import ReidQuantError

MAT_KEYS = ("query_f", "query_label", "query_cam", "gallery_f", "gallery_label", "gallery_cam")
CMC_DEPTH = 50
# Query rows per chunk: keeps each chunk's rank matrices at a few hundred MB for a
# 19,732-image gallery, so the full Market-1501 evaluation stays well under 2 GB.
CHUNK_CELLS = 6_000_000


def _as_int_vector(values) -> np.ndarray:
    return np.asarray(values).reshape(-1).astype(np.int64)


def rank_queries(query_f, gallery_f, max_chunk_rows=None):
    """Yield (start, stop, order) per chunk of queries: gallery indices by descending score."""
    gallery_f = np.asarray(gallery_f, dtype=np.float64)
    rows = max_chunk_rows or max(1, CHUNK_CELLS // max(1, len(gallery_f)))
    for start in range(0, len(query_f), rows):
        stop = min(start + rows, len(query_f))
        scores = torch.from_numpy(np.asarray(query_f[start:stop], dtype=np.float64) @ gallery_f.T)
        # A stable sort (torch's runs rows in parallel): tied scores keep gallery order, as in
        # the per-query loop, so both rank identically.
        yield start, stop, torch.argsort(scores, dim=1, descending=True, stable=True).numpy()


def evaluate(query_f, query_label, query_cam, gallery_f, gallery_label, gallery_cam,
             max_rank: int = CMC_DEPTH, max_chunk_rows: int | None = None) -> dict:
    """Score query features against gallery features with the Market-1501 protocol.

    Rather than sorting the whole gallery for every query, it ranks only what the metrics
    read: each same-identity image's position is the number of kept gallery scores above it
    (equal scores in gallery order, as a stable sort puts them). Images labelled -1 are
    dropped once for all queries; same-camera matches are counted out per query.
    """
    ql, qc = _as_int_vector(query_label), _as_int_vector(query_cam)
    gl, gc = _as_int_vector(gallery_label), _as_int_vector(gallery_cam)
    depth = min(max_rank, len(gl))
    kept = gl != -1
    gallery_f = np.asarray(gallery_f, dtype=np.float64)[kept]
    gl, gc = gl[kept], gc[kept]
    index = np.arange(len(gl))
    same_identity = {label: np.nonzero(gl == label)[0] for label in np.unique(ql)}
    first_hit = np.full(len(ql), -1, dtype=np.int64)
    ap = np.zeros(len(ql))
    ap_noninterp = np.zeros(len(ql))
    inp = np.zeros(len(ql))
    rows = max_chunk_rows or max(1, CHUNK_CELLS // max(1, len(gl)))
    for start in range(0, len(ql), rows):
        scores = np.asarray(query_f[start:start + rows], dtype=np.float64) @ gallery_f.T
        for offset, row in enumerate(scores):
            q = start + offset
            same = same_identity[ql[q]]
            same_camera = gc[same] == qc[q]
            if len(same) == 0 or same_camera.all():
                continue
            threshold = row[same][:, None]
            above = np.count_nonzero(row > threshold, axis=1)
            if np.any(np.count_nonzero(row >= threshold, axis=1) - above > 1):
                above += np.count_nonzero((row == threshold) & (index < same[:, None]), axis=1)
            junk_above = np.sort(above[same_camera])
            hits = np.sort(above[~same_camera])
            r = (hits - np.searchsorted(junk_above, hits)).astype(np.float64)  # rank once junk is gone
            i = np.arange(1, len(r) + 1, dtype=np.float64)
            precision = i / (r + 1)
            old_precision = np.where(r > 0, (i - 1) / np.maximum(r, 1), 1.0)
            ap[q] = np.sum((precision + old_precision) / 2) / len(r)
            ap_noninterp[q] = np.sum(precision) / len(r)
            first_hit[q] = int(r[0])
            inp[q] = len(r) / (r[-1] + 1)
    return _summarise(first_hit, ap, ap_noninterp, inp, depth)


def evaluate_per_query(query_f, query_label, query_cam, gallery_f, gallery_label, gallery_cam,
                       max_rank: int = CMC_DEPTH) -> dict:
    """The protocol one query at a time: rank, drop junk, walk the hits."""
    ql, qc = _as_int_vector(query_label), _as_int_vector(query_cam)
    gl, gc = _as_int_vector(gallery_label), _as_int_vector(gallery_cam)
    gallery_f = np.asarray(gallery_f, dtype=np.float64)
    depth = min(max_rank, len(gl))
    first_hit = np.full(len(ql), -1, dtype=np.int64)
    ap = np.zeros(len(ql))
    ap_noninterp = np.zeros(len(ql))
    inp = np.zeros(len(ql))
    for q in range(len(ql)):
        scores = gallery_f @ np.asarray(query_f[q], dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        junk = (gl[order] == -1) | ((gl[order] == ql[q]) & (gc[order] == qc[q]))
        kept = order[~junk]
        hits = np.nonzero(gl[kept] == ql[q])[0]
        if len(hits) == 0:
            continue
        n = len(hits)
        for i, r in enumerate(hits, start=1):
            precision = i / (r + 1)
            old_precision = (i - 1) / r if r > 0 else 1.0
            ap[q] += (precision + old_precision) / 2 / n
            ap_noninterp[q] += precision / n
        first_hit[q] = hits[0]
        inp[q] = n / (hits[-1] + 1)
    return _summarise(first_hit, ap, ap_noninterp, inp, depth)


def _summarise(first_hit, ap, ap_noninterp, inp, depth) -> dict:
    valid = first_hit >= 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ReidQuantError("no query has a true match in the gallery (same identity, other camera)")
    cmc = np.array([(first_hit[valid] < k).mean() for k in range(1, depth + 1)])
    return {
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, depth - 1)]),
        "rank10": float(cmc[min(9, depth - 1)]),
        "mAP": float(ap[valid].mean()),
        "mAP_noninterp": float(ap_noninterp[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "num_query": int(len(first_hit)),
        "num_valid_query": num_valid,
        "cmc": [float(x) for x in cmc],
    }


def fidelity(features: dict, reference: dict, top_k: int = 10) -> dict:
    """How close features are to reference features of the same images."""
    cos = np.concatenate([
        np.sum(features[f"{part}_f"].astype(np.float64) * reference[f"{part}_f"], axis=1)
        for part in ("query", "gallery")
    ])
    k = min(top_k, len(features["gallery_f"]))
    agree_top1 = []
    overlap = []
    for (_, _, order), (_, _, ref_order) in zip(
        rank_queries(features["query_f"], features["gallery_f"]),
        rank_queries(reference["query_f"], reference["gallery_f"]),
    ):
        agree_top1.append(order[:, 0] == ref_order[:, 0])
        top, ref_top = np.sort(order[:, :k], axis=1), np.sort(ref_order[:, :k], axis=1)
        overlap.append([len(np.intersect1d(a, b, assume_unique=True)) / k for a, b in zip(top, ref_top)])
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "top1_agreement": float(np.concatenate(agree_top1).mean()),
        f"top{k}_overlap": float(np.concatenate(overlap).mean()),
    }


def _read_strings(value) -> list[str]:
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return [str(s).strip() for s in array.reshape(-1)]
    return [str(np.asarray(s).reshape(-1)[0]).strip() for s in array.reshape(-1)]


def load_features(path) -> dict:
    """Read and check a features .mat file (ours or the reference project's)."""
    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise ReidQuantError(f"{path}: no such features file") from None
    except Exception as error:  # scipy raises several unrelated types for a bad file
        raise ReidQuantError(f"{path}: not a readable .mat file ({error})") from None
    missing = [key for key in MAT_KEYS if key not in mat]
    if missing:
        raise ReidQuantError(f"{path}: missing key {missing[0]!r} (needs {', '.join(MAT_KEYS)})")
    out = {}
    normalised = []
    for part in ("query", "gallery"):
        feats = np.asarray(mat[f"{part}_f"], dtype=np.float32)
        if feats.ndim != 2:
            raise ReidQuantError(f"{path}: {part}_f must be a 2-D array, got shape {feats.shape}")
        labels = _as_int_vector(mat[f"{part}_label"])
        cams = _as_int_vector(mat[f"{part}_cam"])
        if not (len(feats) == len(labels) == len(cams)):
            raise ReidQuantError(
                f"{path}: {part}_f has {len(feats)} rows but {part}_label has {len(labels)} "
                f"and {part}_cam {len(cams)}")
        if not np.isfinite(feats).all():
            bad = int(np.nonzero(~np.isfinite(feats).all(axis=1))[0][0])
            raise ReidQuantError(f"{path}: {part}_f row {bad} holds NaN or infinite values")
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        if np.any(np.abs(norms - 1) > 1e-3):
            normalised.append(part)
            feats = feats / np.maximum(norms, 1e-12)
        out[f"{part}_f"], out[f"{part}_label"], out[f"{part}_cam"] = feats, labels, cams
        if f"{part}_path" in mat:
            out[f"{part}_path"] = _read_strings(mat[f"{part}_path"])
    if out["query_f"].shape[1] != out["gallery_f"].shape[1]:
        raise ReidQuantError(
            f"{path}: query_f is {out['query_f'].shape[1]}-d but gallery_f is "
            f"{out['gallery_f'].shape[1]}-d")
    out["normalised"] = normalised
    return out


def check_same_images(features: dict, reference: dict, path, reference_path) -> None:
    for part in ("query", "gallery"):
        for key in (f"{part}_label", f"{part}_cam"):
            if features[key].shape != reference[key].shape or np.any(features[key] != reference[key]):
                raise ReidQuantError(
                    f"{path} and reference {reference_path} describe different images ({key} differs)")
        if f"{part}_path" in features and f"{part}_path" in reference:
            if features[f"{part}_path"] != reference[f"{part}_path"]:
                raise ReidQuantError(
                    f"{path} and reference {reference_path} describe different images "
                    f"({part}_path differs)")
        if features[f"{part}_f"].shape[1] != reference[f"{part}_f"].shape[1]:
            raise ReidQuantError(
                f"{path} has {features[f'{part}_f'].shape[1]}-d features but reference "
                f"{reference_path} has {reference[f'{part}_f'].shape[1]}-d")


def evaluate_file(path, reference_path=None) -> dict:
    """Metrics (and fidelity, with a reference) for a features .mat file."""
    features = load_features(path)
    metrics = evaluate(*(features[key] for key in MAT_KEYS))
    metrics["normalised"] = features["normalised"]
    if reference_path is not None:
        reference = load_features(reference_path)
        check_same_images(features, reference, path, reference_path)
        metrics.update(fidelity(features, reference))
    return metrics


def one_line(metrics: dict) -> str:
    line = (f"Rank@1 {metrics['rank1']:.2%}  Rank@5 {metrics['rank5']:.2%}  "
            f"Rank@10 {metrics['rank10']:.2%}  mAP {metrics['mAP']:.2%}  mINP {metrics['mINP']:.2%}  "
            f"({metrics['num_valid_query']}/{metrics['num_query']} queries)")
    if "cos_mean" in metrics:
        line += (f"  cos {metrics['cos_mean']:.5f} (min {metrics['cos_min']:.4f})  "
                 f"top-1 agreement {metrics['top1_agreement']:.2%}")
    return line
