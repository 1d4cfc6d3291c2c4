"""The features ``.mat`` contract: the keys, writing it, reading it back with checks.

Keys are the reference project's (``query_f query_label query_cam gallery_f gallery_label
gallery_cam``), so its evaluation scripts read our files and we read theirs; ``query_path``
and ``gallery_path`` (image file names) are our extension.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io

from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_path

MAT_KEYS = ("query_f", "query_label", "query_cam", "gallery_f", "gallery_label", "gallery_cam")


def as_int_vector(values) -> np.ndarray:
    return np.asarray(values).reshape(-1).astype(np.int64)


def save_mat(path: Path, mat: dict) -> None:
    """Write atomically: a crash never leaves a truncated .mat under the final name."""
    with atomic_path(path) as tmp:
        scipy.io.savemat(tmp, mat)


def _read_strings(value) -> list[str]:
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return [str(s).strip() for s in array.reshape(-1)]
    return [str(np.asarray(s).reshape(-1)[0]).strip() for s in array.reshape(-1)]


def _int_key(mat: dict, key: str, path) -> np.ndarray:
    values = np.asarray(mat[key])
    if values.dtype.kind not in "iub" and not (values.dtype.kind == "f" and np.all(values == np.round(values))):
        raise ReidQuantError(f"{path}: {key} must hold integers, got {values.dtype} values")
    return as_int_vector(values)


def not_run_record(path) -> dict | None:
    """What an extraction job recorded in place of features where its node could not run the
    variant (``reidquant.pipeline.extract_features``), or None for a features file."""
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["not_run"])
    except Exception:  # not a readable .mat: load_features names the problem
        return None
    if "not_run" not in mat:
        return None
    return json.loads(_read_strings(mat["not_run"])[0])


def load_features(path) -> dict:
    """Read and check a features .mat file (ours or the reference project's)."""
    if Path(path).is_dir():
        raise ReidQuantError(f"{path}: is a folder, not a features .mat file")
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
        feats = np.asarray(mat[f"{part}_f"])
        if feats.dtype.kind not in "iuf":
            raise ReidQuantError(f"{path}: {part}_f must hold numbers, got {feats.dtype} values")
        # MATLAB files store arrays column-major; every later step reads them a row at a time
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.ndim != 2:
            raise ReidQuantError(f"{path}: {part}_f must be a 2-D array, got shape {feats.shape}")
        labels, cams = (_int_key(mat, f"{part}_{name}", path) for name in ("label", "cam"))
        if not (len(feats) == len(labels) == len(cams)):
            raise ReidQuantError(
                f"{path}: {part}_f has {len(feats)} rows but {part}_label has {len(labels)} "
                f"and {part}_cam {len(cams)}")
        if not np.isfinite(feats).all():
            bad = int(np.nonzero(~np.isfinite(feats).all(axis=1))[0][0])
            raise ReidQuantError(f"{path}: {part}_f row {bad} holds NaN or infinite values")
        # In float64: a float32 sum of squares overflows for features near 1e19 and underflows
        # near 1e-19, and either would turn good rows into zeros.
        wide = feats.astype(np.float64)
        norms = np.linalg.norm(wide, axis=1, keepdims=True)
        if np.any(norms == 0):
            bad = int(np.nonzero(norms[:, 0] == 0)[0][0])
            raise ReidQuantError(f"{path}: {part}_f row {bad} is all zeros; it cannot be L2-normalised or ranked")
        if np.any(np.abs(norms - 1) > 1e-3):
            normalised.append(part)
            feats = (wide / norms).astype(np.float32)
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
