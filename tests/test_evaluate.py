import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from conftest import ROOT, market_like, run_cli, write_mat
from reidquant.errors import ReidQuantError
from reidquant.evaluate import (evaluate, evaluate_file, evaluate_per_query, fidelity,
                                top_ranked)
from reidquant.matfile import load_features

METRICS = ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP")


def at_angles(angles):
    angles = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_hand_computed_example():
    # Ranked gallery: junk (same camera), wrong, good, junk (-1), distractor, good.
    gallery_f = at_angles([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    g_label = [1, 2, 1, -1, 0, 1]
    g_cam = [1, 2, 2, 3, 3, 3]
    m = evaluate(at_angles([0.0]), [1], [1], gallery_f, g_label, g_cam)
    # hits at ranks 1 and 3 once junk is gone: AP = 1/2*(0+1/2)/2 + 1/2*(1/3+1/2)/2
    assert m["mAP"] == pytest.approx(0.125 + 5 / 24, abs=1e-12)
    assert m["mAP_noninterp"] == pytest.approx(0.5, abs=1e-12)
    assert m["mINP"] == pytest.approx(0.5, abs=1e-12)
    assert (m["rank1"], m["rank5"]) == (0.0, 1.0)
    assert m["num_valid_query"] == 1


def test_first_hit_at_rank_zero_counts_full_precision():
    m = evaluate(at_angles([0.0]), [3], [1], at_angles([0.1, 0.2]), [3, 4], [2, 2])
    assert m["mAP"] == 1.0 and m["rank1"] == 1.0 and m["mINP"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_equals_per_query_loop(seed):
    data = market_like(np.random.default_rng(seed))
    fast = evaluate(*data, max_chunk_rows=7)  # several chunks, a ragged last one
    slow = evaluate_per_query(*data)
    for key in METRICS:
        assert fast[key] == pytest.approx(slow[key], abs=1e-9), key
    assert fast["cmc"] == pytest.approx(slow["cmc"], abs=1e-9)
    assert fast["per_query"]["ap"] == pytest.approx(slow["per_query"]["ap"], abs=1e-9)
    assert fast["per_query"]["rank1"] == slow["per_query"]["rank1"]
    assert np.mean(fast["per_query"]["ap"]) == pytest.approx(fast["mAP"], abs=1e-12)
    assert np.mean(fast["per_query"]["rank1"]) == fast["rank1"]
    assert fast["num_query"] == 60
    assert fast["num_valid_query"] == slow["num_valid_query"] == 58  # same-camera-only and absent skipped


def test_two_matches_with_equal_scores_take_consecutive_ranks():
    gallery = (at_angles([0.1, 0.2, 0.2, 0.3]), [2, 1, 1, 3], [1, 2, 3, 1])
    m = evaluate(at_angles([0.0]), [1], [1], *gallery)
    assert m == evaluate_per_query(at_angles([0.0]), [1], [1], *gallery)
    assert m["mAP_noninterp"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_closer_than_float32_resolution_rank_as_in_float64(seed):
    rng = np.random.default_rng(seed)
    qf, ql, qc, gf, gl, gc = market_like(rng, dim=64)
    # Wrong identities and junk a hair (1e-7) away from true matches: float32 cannot order them.
    twins = rng.choice(np.flatnonzero(gl > 0), 150)
    gf = np.concatenate([gf, gf[twins] + 1e-7 * rng.normal(size=(150, 64)).astype(np.float32)])
    gl = np.concatenate([gl, np.where(np.arange(150) % 5, 0, -1)])
    gc = np.concatenate([gc, rng.integers(1, 7, 150)])
    fast = evaluate(qf, ql, qc, gf, gl, gc, max_chunk_rows=7)
    slow = evaluate_per_query(qf, ql, qc, gf, gl, gc)
    for key in METRICS:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1])
def test_tied_scores_rank_in_gallery_order_as_the_loop_does(seed):
    qf, ql, qc, gf, gl, gc = market_like(np.random.default_rng(seed), dim=4)
    # a coarse grid makes many query-gallery scores exactly equal, as quantized features do
    qf, gf = np.round(qf * 2) / 2, np.round(gf * 2) / 2
    gf[10:20] = gf[0]  # and duplicate images
    fast = evaluate(qf, ql, qc, gf, gl, gc, max_chunk_rows=7)
    slow = evaluate_per_query(qf, ql, qc, gf, gl, gc)
    for key in METRICS:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


@pytest.mark.parametrize("grid", [None, 2])
def test_top_ranked_equals_a_stable_sort(rng, grid):
    qf, _, _, gf, _, _ = market_like(rng, dim=4)
    if grid:  # many equal scores, some at the k-th place
        qf, gf = np.round(qf * grid) / grid, np.round(gf * grid) / grid
    scores = qf.astype(np.float64) @ gf.astype(np.float64).T
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert np.array_equal(np.concatenate(list(top_ranked(qf, gf, 10, max_chunk_rows=7))), expected)


def test_distractors_count_as_wrong_and_junk_is_ignored():
    query = at_angles([0.0])
    # distractor first: the true match drops to rank 1
    m = evaluate(query, [5], [1], at_angles([0.1, 0.2]), [0, 5], [2, 2])
    assert m["rank1"] == 0.0
    # junk (-1) first: ignored, the true match is rank 0
    m = evaluate(query, [5], [1], at_angles([0.1, 0.2]), [-1, 5], [2, 2])
    assert m["rank1"] == 1.0


def test_no_valid_query_is_an_error():
    with pytest.raises(ReidQuantError, match="no query has a true match"):
        evaluate(at_angles([0.0]), [5], [1], at_angles([0.1]), [5], [1])
    with pytest.raises(ReidQuantError, match="no query has a true match"):
        evaluate(at_angles([]), [], [], at_angles([0.1]), [5], [1])


def test_reads_reference_layout_and_fidelity(tmp_path, rng):
    data = market_like(rng)
    path = write_mat(tmp_path / "pytorch_result.mat", data)
    raw = scipy.io.loadmat(path)
    assert raw["query_label"].shape == (1, 60)  # 1 x N, as the reference project stores them
    m = evaluate_file(path, reference_path=path)
    assert m["mAP"] == pytest.approx(evaluate(*data)["mAP"])
    assert m["cos_mean"] == pytest.approx(1.0, abs=1e-6)
    assert m["top1_agreement"] == 1.0 and m["top10_overlap"] == 1.0


def test_fidelity_of_perturbed_features(rng):
    data = market_like(rng)
    keys = ("query_f", "query_label", "query_cam", "gallery_f", "gallery_label", "gallery_cam")
    ref = dict(zip(keys, data))
    noisy = dict(ref)
    for part in ("query_f", "gallery_f"):
        f = ref[part] + 0.01 * rng.normal(size=ref[part].shape).astype(np.float32)
        noisy[part] = f / np.linalg.norm(f, axis=1, keepdims=True)
    out = fidelity(noisy, ref)
    assert 0.99 < out["cos_mean"] < 1.0
    assert out["cos_min"] <= out["cos_mean"]
    assert 0.0 < out["top1_agreement"] <= 1.0


def test_unnormalised_features_are_normalised(tmp_path, rng):
    qf, ql, qc, gf, gl, gc = market_like(rng)
    path = write_mat(tmp_path / "f.mat", (qf * 3, ql, qc, gf, gl, gc))
    features = load_features(path)
    assert features["normalised"] == ["query"]
    assert np.allclose(np.linalg.norm(features["query_f"], axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("case, message", [
    ("missing", "missing key 'gallery_cam'"),
    ("lengths", "query_f has 60 rows but query_label has 59"),
    ("nan", "gallery_f row 3 holds NaN"),
    ("widths", "query_f is 32-d but gallery_f is 16-d"),
])
def test_bad_mat_files(tmp_path, rng, case, message):
    qf, ql, qc, gf, gl, gc = market_like(rng)
    extra = {}
    if case == "lengths":
        ql = ql[:-1]
    elif case == "nan":
        gf = gf.copy()
        gf[3, 0] = np.nan
    elif case == "widths":
        gf = gf[:, :16]
    path = write_mat(tmp_path / "bad.mat", (qf, ql, qc, gf, gl, gc), **extra)
    if case == "missing":
        mat = scipy.io.loadmat(path)
        del mat["gallery_cam"]
        scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(ReidQuantError, match=message):
        evaluate_file(path)


def test_reference_of_other_images_is_refused(tmp_path, rng):
    data = market_like(rng)
    path = write_mat(tmp_path / "a.mat", data)
    other = list(data)
    other[2] = np.roll(other[2], 1)
    ref = write_mat(tmp_path / "b.mat", tuple(other))
    with pytest.raises(ReidQuantError, match="different images"):
        evaluate_file(path, reference_path=ref)


def test_cli_writes_json_and_prints_one_line(tmp_path, rng):
    path = write_mat(tmp_path / "f.mat", market_like(rng))
    result = run_cli("evaluate", path, "--reference", path, "--json", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    assert "Rank@1" in result.stdout and len(result.stdout.strip().splitlines()) == 1
    metrics = json.loads((tmp_path / "m.json").read_text())
    for key in (*METRICS, "num_query", "num_valid_query", "cos_mean", "cos_min", "top1_agreement"):
        assert key in metrics
    assert all(0 <= metrics[k] <= 1 for k in METRICS)


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    (tmp_path / "broken.mat").write_bytes(b"not a mat file")
    result = run_cli("evaluate", tmp_path / "broken.mat", "--json", tmp_path / "m.json")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "broken.mat" in result.stderr
    assert not (tmp_path / "m.json").exists()
    result = run_cli("evaluate", tmp_path / "absent.mat")
    assert result.returncode == 1 and "no such features file" in result.stderr


def tail_kernel_product(query_rows, gallery_rows):
    """A product whose last (size mod 8) columns come out one ulp high, as some BLAS kernels do."""
    scores = query_rows @ gallery_rows.T
    tail = gallery_rows.shape[0] % 8
    if tail:
        scores[:, -tail:] = np.nextafter(scores[:, -tail:], np.inf)
    return scores


def test_identical_gallery_images_tie_even_in_the_tail_columns(monkeypatch, rng):
    """A true match and its exact copy, labelled a distractor, in the product's tail columns."""
    import reidquant.evaluate as module

    dim, size = 32, 8 * 6 + 3
    gallery_f = rng.normal(size=(size, dim)).astype(np.float32)
    gallery_f /= np.linalg.norm(gallery_f, axis=1, keepdims=True)
    gallery_label, gallery_cam = rng.integers(1, 9, size), np.full(size, 2)
    gallery_label[0] = 50  # the true match, first in gallery order
    gallery_f[-1], gallery_label[-1] = gallery_f[0], 0  # its copy, last
    query_f = gallery_f[[0] * 5] + 0.01 * rng.normal(size=(5, dim)).astype(np.float32)
    query_f /= np.linalg.norm(query_f, axis=1, keepdims=True)
    data = (query_f, np.full(5, 50), np.ones(5, int), gallery_f, gallery_label, gallery_cam)
    monkeypatch.setattr(module, "product", tail_kernel_product)
    # equal scores keep gallery order: the true match ranks first for every query
    assert module.evaluate(*data)["rank1"] == 1.0
    assert module.evaluate_per_query(*data)["rank1"] == 1.0
    top = np.concatenate(list(module.top_ranked(query_f, gallery_f, 2)))
    assert (top[:, 0] == 0).all()


def test_scoring_does_not_import_torch(tmp_path, rng):
    path = write_mat(tmp_path / "f.mat", market_like(rng))
    code = ("import sys; from reidquant.cli import main; main(['evaluate', sys.argv[1]]); "
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no torch"
