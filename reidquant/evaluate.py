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

import sys

import numpy as np

from reidquant.errors import ReidQuantError
from reidquant.jsonio import write_json
from reidquant.matfile import MAT_KEYS, as_int_vector, check_same_images, load_features, not_run_record

CMC_DEPTH = 50
# Query rows per chunk: keeps each chunk's float64 score matrix near 50 MB, so the full
# Market-1501 evaluation stays well under 2 GB.
CHUNK_CELLS = 6_000_000


def product(query_rows: np.ndarray, gallery_rows: np.ndarray) -> np.ndarray:
    """The one matrix product every ranking here is made of (float64 query x gallery scores)."""
    return query_rows @ gallery_rows.T


def distinct_rows(gallery_f: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Each distinct gallery row once, and each row's index into them (None: all distinct).

    Identical images must score identically, so that "equal scores keep gallery order"
    holds; but BLAS computes the last (size mod 8) columns of a product with another
    kernel, which can put a copy there a few ulps off its original.
    """
    rows = np.ascontiguousarray(gallery_f)
    # Each row's bytes as one opaque value: ~50 times faster than np.unique(..., axis=0).
    keys = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == len(rows):
        return rows, None
    return rows[first], inverse.reshape(-1)


def score_chunks(query_f, gallery_f, max_chunk_rows: int | None = None):
    """Yield (first query, float64 scores of a chunk of queries against every gallery image)."""
    distinct, inverse = distinct_rows(np.asarray(gallery_f, dtype=np.float64))
    rows = max_chunk_rows or max(1, CHUNK_CELLS // max(1, len(gallery_f)))
    for start in range(0, len(query_f), rows):
        scores = product(np.asarray(query_f[start:start + rows], dtype=np.float64), distinct)
        yield start, scores if inverse is None else scores[:, inverse]


def top_ranked(query_f, gallery_f, k: int, max_chunk_rows: int | None = None):
    """Yield, per chunk of queries, each query's k best gallery indices by descending score.

    Ties keep gallery order, so the result equals the first k columns of a stable sort of
    every row, without sorting the rows.
    """
    import torch  # here, not at the top: scoring alone runs without torch (2.4 s, ~660 MB less)

    gallery_f = np.asarray(gallery_f, dtype=np.float64)
    k = min(k, len(gallery_f))
    for _, scores in score_chunks(query_f, gallery_f, max_chunk_rows):
        # One more than k shows whether the k-th score is tied with one left out.
        values, index = torch.topk(torch.from_numpy(scores), min(k + 1, len(gallery_f)), dim=1)
        index = np.sort(index[:, :k].numpy(), axis=1)
        by_score = np.argsort(-np.take_along_axis(scores, index, axis=1), axis=1, kind="stable")
        index = np.take_along_axis(index, by_score, axis=1)
        if k < len(gallery_f):
            for row in np.flatnonzero((values[:, k] == values[:, k - 1]).numpy()):
                index[row] = np.argsort(-scores[row], kind="stable")[:k]
        yield index


def float32_error_bound(query_f, gallery_f) -> float:
    """How far a float32 product's score can be from the float64 one, for any summation order:
    |error| <= gamma_d * |q| * |g| with gamma_d = d*u / (1 - d*u) (Higham), for both precisions."""
    dim = query_f.shape[1]
    norms = float(np.linalg.norm(query_f, axis=1).max(initial=0.0) * np.linalg.norm(gallery_f, axis=1).max(initial=0.0))
    gamma = sum(dim * u / (1 - dim * u) for u in (2.0 ** -24, 2.0 ** -53))
    return gamma * norms


def evaluate(query_f, query_label, query_cam, gallery_f, gallery_label, gallery_cam,
             max_rank: int = CMC_DEPTH, max_chunk_rows: int | None = None) -> dict:
    """Score query features against gallery features with the Market-1501 protocol.

    Rather than sorting the whole gallery for every query, it ranks only what the metrics
    read: each same-identity image's position is the number of kept gallery scores above it
    (equal scores in gallery order, as a stable sort puts them). Images labelled -1 are
    dropped once for all queries; same-camera matches are counted out per query.

    The scores come from a float32 product (half the time of float64), and the few that lie
    within twice float32's error bound of a same-identity score, where float32 could order
    them otherwise than float64, are scored again in float64 with those same-identity
    scores: every comparison a rank depends on is then the float64 one.
    """
    ql, qc = as_int_vector(query_label), as_int_vector(query_cam)
    gl, gc = as_int_vector(gallery_label), as_int_vector(gallery_cam)
    kept = gl != -1
    gallery_f = np.ascontiguousarray(np.asarray(gallery_f, dtype=np.float32)[kept])
    query_f = np.ascontiguousarray(np.asarray(query_f, dtype=np.float32))
    gl, gc = gl[kept], gc[kept]
    same_identity = {label: np.nonzero(gl == label)[0] for label in np.unique(ql)}
    margin = 2 * float32_error_bound(query_f, gallery_f)
    hit_ranks = [np.zeros(0, dtype=np.int64)] * len(ql)
    rows = max_chunk_rows or max(1, CHUNK_CELLS // max(1, len(gallery_f)))
    for start in range(0, len(ql), rows):
        scores = query_f[start:start + rows] @ gallery_f.T
        for offset, row in enumerate(scores):
            q = start + offset
            same = same_identity[ql[q]]
            same_camera = gc[same] == qc[q]
            if len(same) == 0 or same_camera.all():
                continue
            row = _rescored(row, same, same_camera, margin, query_f[q], gallery_f)
            hit_ranks[q] = _hit_ranks(row, same, same_camera)
    return _summarise(hit_ranks, min(max_rank, len(gl)))


def _rescored(row, same, same_camera, margin, query, gallery_f):
    """A query's float32 score row in float64, with its same-identity scores and every score
    near one of them computed in float64.

    Each of those is its own row-wise sum (not a BLAS product, whose tail columns take
    another kernel), so identical gallery images get identical scores and tie exactly.
    """
    threshold = row[same]
    floor = threshold[~same_camera].min() - margin
    candidates = np.flatnonzero(row >= floor)
    near = (np.abs(row[candidates, None] - threshold[None, :]) <= margin).any(axis=1)
    again = np.concatenate([same, candidates[near]])
    exact = row.astype(np.float64)
    exact[again] = np.multiply(gallery_f[again], query.astype(np.float64)).sum(axis=1)
    return exact


def _hit_ranks(row, same, same_camera):
    """Ranks (0-based, ascending, junk removed) of a query's true matches, from its score row."""
    threshold = row[same]
    # Images scoring below every true match cannot change a hit's rank.
    floor = threshold[~same_camera].min()
    candidates = row[np.flatnonzero(row >= floor)]
    order = np.argsort(threshold, kind="stable")
    ascending = threshold[order]
    # How many same-identity scores lie under each candidate (a branch-free searchsorted).
    below = np.add.reduce(candidates > ascending[:, None], axis=0, dtype=np.min_scalar_type(len(same)))
    above = np.empty(len(same), dtype=np.int64)
    above[order] = len(candidates) - np.cumsum(np.bincount(below, minlength=len(same)))[:len(same)]
    # Every same-identity image at or over the floor equals itself; anything more is a tie,
    # and a stable sort puts the earlier gallery image of a tie first.
    equal = np.count_nonzero(ascending[np.minimum(below, len(same) - 1)] == candidates)
    if equal > np.count_nonzero(threshold >= floor) or np.any(ascending[1:] == ascending[:-1]):
        earlier = np.arange(len(row)) < same[:, None]
        above += np.count_nonzero((row == threshold[:, None]) & earlier, axis=1)
    hits = np.sort(above[~same_camera])
    if same_camera.any():  # junk ranked above a hit moves it up once removed
        hits -= np.searchsorted(np.sort(above[same_camera]), hits)
    return hits


def evaluate_per_query(query_f, query_label, query_cam, gallery_f, gallery_label, gallery_cam,
                       max_rank: int = CMC_DEPTH) -> dict:
    """The protocol one query at a time: rank, drop junk, walk the hits."""
    ql, qc = as_int_vector(query_label), as_int_vector(query_cam)
    gl, gc = as_int_vector(gallery_label), as_int_vector(gallery_cam)
    distinct, inverse = distinct_rows(np.asarray(gallery_f, dtype=np.float64))
    first_hit, ap, ap_noninterp, inp = [], [], [], []
    for q in range(len(ql)):
        scores = product(np.asarray(query_f[q:q + 1], dtype=np.float64), distinct)[0]
        scores = scores if inverse is None else scores[inverse]
        order = np.argsort(-scores, kind="stable")
        junk = (gl[order] == -1) | ((gl[order] == ql[q]) & (gc[order] == qc[q]))
        kept = order[~junk]
        hits = np.nonzero(gl[kept] == ql[q])[0]
        if len(hits) == 0:
            continue
        n = len(hits)
        ap.append(0.0)
        ap_noninterp.append(0.0)
        for i, r in enumerate(hits, start=1):
            precision = i / (r + 1)
            old_precision = (i - 1) / r if r > 0 else 1.0
            ap[-1] += (precision + old_precision) / 2 / n
            ap_noninterp[-1] += precision / n
        first_hit.append(hits[0])
        inp.append(n / (hits[-1] + 1))
    return _metrics(np.array(first_hit), np.array(ap), np.array(ap_noninterp), np.array(inp),
                    len(ql), min(max_rank, len(gl)))


def _summarise(hit_ranks: list, depth: int) -> dict:
    """Metrics from each query's true-match ranks (0-based, ascending; empty: no true match)."""
    n = np.array([len(r) for r in hit_ranks if len(r)], dtype=np.int64)
    starts = np.cumsum(n) - n
    r = np.concatenate([np.zeros(0), *hit_ranks]).astype(np.float64)
    i = np.arange(1, len(r) + 1) - np.repeat(starts, n).astype(np.float64)  # 1-based hit number
    precision = i / (r + 1)
    old_precision = np.where(r > 0, (i - 1) / np.maximum(r, 1), 1.0)
    return _metrics(r[starts], np.add.reduceat((precision + old_precision) / 2, starts) / n,
                    np.add.reduceat(precision, starts) / n, n / (r[starts + n - 1] + 1),
                    len(hit_ranks), depth)


def _metrics(first_hit, ap, ap_noninterp, inp, num_query: int, depth: int) -> dict:
    """The summary over valid queries, given each one's first-hit rank, AP, plain AP and INP."""
    num_valid = len(first_hit)
    if num_valid == 0:
        raise ReidQuantError("no query has a true match in the gallery (same identity, other camera)")
    cmc = np.array([(first_hit < k).mean() for k in range(1, depth + 1)])
    return {
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, depth - 1)]),
        "rank10": float(cmc[min(9, depth - 1)]),
        "mAP": float(ap.mean()),
        "mAP_noninterp": float(ap_noninterp.mean()),
        "mINP": float(inp.mean()),
        "num_query": num_query,
        "num_valid_query": num_valid,
        "cmc": [float(x) for x in cmc],
        # Each valid query's AP and whether its first hit is at rank 1, in query order: what
        # intervals and paired differences between variants are computed from.
        "per_query": {"ap": [float(x) for x in ap], "rank1": [int(x) for x in first_hit == 0]},
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
    for top, ref_top in zip(top_ranked(features["query_f"], features["gallery_f"], k),
                            top_ranked(reference["query_f"], reference["gallery_f"], k)):
        agree_top1.append(top[:, 0] == ref_top[:, 0])
        overlap.append((top[:, :, None] == ref_top[:, None, :]).any(axis=2).sum(axis=1) / k)
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "top1_agreement": float(np.concatenate(agree_top1).mean()),
        f"top{k}_overlap": float(np.concatenate(overlap).mean()),
    }


def evaluate_file(path, reference_path=None) -> dict:
    """Metrics (and fidelity, with a reference) for a features .mat file."""
    features = load_features(path)
    try:
        metrics = evaluate(*(features[key] for key in MAT_KEYS))
    except ReidQuantError as error:
        raise ReidQuantError(f"{path}: {error}") from None
    metrics["normalised"] = features["normalised"]
    if reference_path is not None:
        reference = load_features(reference_path)
        check_same_images(features, reference, path, reference_path)
        metrics.update(fidelity(features, reference))
    return metrics


def evaluate_and_save(path, reference_path=None, json_path=None) -> dict:
    """`evaluate_file`, its metrics written to ``json_path`` and said in one line on stdout.
    An extraction that recorded why it could not run on its node passes that record on."""
    record = not_run_record(path)
    if record is not None:
        if json_path:
            write_json(json_path, {"not_run": record})
        print(f"not run on node {record['node']}: {record['reason']}")
        return {"not_run": record}
    metrics = evaluate_file(path, reference_path)
    if metrics["normalised"]:
        print(f"note: {', '.join(metrics['normalised'])} features were not L2-normalised; normalised them",
              file=sys.stderr)
    if json_path:
        write_json(json_path, metrics)
    print(one_line(metrics))
    return metrics


def one_line(metrics: dict) -> str:
    line = (f"Rank@1 {metrics['rank1']:.2%}  Rank@5 {metrics['rank5']:.2%}  "
            f"Rank@10 {metrics['rank10']:.2%}  mAP {metrics['mAP']:.2%}  mINP {metrics['mINP']:.2%}  "
            f"({metrics['num_valid_query']}/{metrics['num_query']} queries)")
    if "cos_mean" in metrics:
        line += (f"  cos {metrics['cos_mean']:.5f} (min {metrics['cos_min']:.4f})  "
                 f"top-1 agreement {metrics['top1_agreement']:.2%}")
    return line
