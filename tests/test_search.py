"""The gallery side: FAISS indexes over gallery plus distractors, scored with the exact protocol."""

import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import dry_run_jobs, market_like, snakemake
from reidquant.devices import settled_resident_bytes
from reidquant.errors import ReidQuantError
from reidquant.evaluate import evaluate
from reidquant.search import build_index, evaluate_scores, rank_scores, recalls, search_gallery, top

# One of each kind the schema accepts, sized for a few hundred vectors.
INDEXES = ["Flat", "SQfp16", "SQ8", "PQ8x4", "IVF4,Flat", "IVF4,PQ8x4", "HNSW8", "HNSW8,SQ8", "OPQ8,PQ8x4"]


@pytest.fixture
def features(rng, tmp_path):
    qf, ql, qc, gf, gl, gc = market_like(rng, n_ids=30, n_query=60, n_gallery=400, dim=32)
    distractors = rng.normal(size=(300, 32)).astype(np.float32)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)
    import scipy.io

    scipy.io.savemat(tmp_path / "f.mat", {"query_f": qf, "query_label": ql, "query_cam": qc, "gallery_f": gf,
                                          "gallery_label": gl, "gallery_cam": gc})
    np.save(tmp_path / "d.npy", distractors)
    return tmp_path / "f.mat", tmp_path / "d.npy", (qf, ql, qc, gf, gl, gc), distractors


def test_exact_search_scores_as_the_evaluation_does(features):
    _, _, (qf, ql, qc, gf, gl, gc), _ = features
    index, _ = build_index("Flat", np.ascontiguousarray(gf))
    scores = rank_scores(index, qf, len(gf), len(gf))
    ours, reference = evaluate_scores(scores, ql, qc, gl, gc), evaluate(qf, ql, qc, gf, gl, gc)
    for key in ("rank1", "rank5", "mAP", "mAP_noninterp", "mINP", "num_valid_query"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-6), key


def test_images_an_index_does_not_return_rank_after_those_it_does(features):
    _, _, (qf, ql, qc, gf, gl, gc), _ = features
    index, _ = build_index("Flat", np.ascontiguousarray(gf))
    few = rank_scores(index, qf, len(gf), 5)
    assert (np.isfinite(few).sum(axis=1) == 5).all()
    # A true match beyond the first 5 can only move down: every query's AP is at most exact's.
    exact = evaluate_scores(rank_scores(index, qf, len(gf), len(gf)), ql, qc, gl, gc)
    truncated = evaluate_scores(few, ql, qc, gl, gc)
    assert (np.array(truncated["per_query"]["ap"]) <= np.array(exact["per_query"]["ap"]) + 1e-12).all()
    assert np.array_equal(top(few, 5), top(rank_scores(index, qf, len(gf), len(gf)), 5))
    assert recalls(top(few), top(few)) == (1.0, 1.0)


def test_a_true_match_an_index_does_not_return_ranks_last():
    # One query (identity 1, camera 1); gallery: its match (camera 2), then two other people.
    # The index returned only the last image: the match, first in gallery order, is never found.
    scores = np.array([[-np.inf, -np.inf, 0.5]])
    found = evaluate_scores(scores, np.array([1]), np.array([1]), np.array([1, 2, 3]), np.array([2, 1, 1]))
    # Market-1501's AP: the mean of the precision just before the hit (0 of 2) and at it (1 of 3).
    assert found["per_query"]["ap"][0] == pytest.approx((0 / 2 + 1 / 3) / 2) and found["rank1"] == 0


def test_every_index_kind_is_built_scored_and_timed(features):
    mat, npy, _, distractors = features
    found = search_gallery(mat, npy, INDEXES, k=100, nprobe=2, ef_search=16, threads=1)
    assert found["total_images"] == 400 + len(distractors) and found["distractors"] == len(distractors)
    rows = {row["index"]: row for row in found["indexes"]}
    assert list(rows) == INDEXES
    flat = rows["Flat"]
    assert flat["mAP"] == pytest.approx(found["exact"]["mAP"]) and flat["mAP_delta"] == 0 == flat["mAP_delta_lo"]
    # Returning 100 of 460 images can only lose matches that exact search over all of them finds.
    assert found["exact"]["mAP"] <= found["exact"]["mAP_all_images"] + 1e-12
    assert flat["recall_at_10"] == flat["one_recall_at_10"] == 1.0 and flat["bytes_per_image"] > 4 * 32
    assert rows["SQfp16"]["mAP"] == pytest.approx(flat["mAP"], abs=1e-4)
    assert rows["SQ8"]["bytes_per_image"] < rows["SQfp16"]["bytes_per_image"] < flat["bytes_per_image"]
    for row in rows.values():
        assert 0 <= row["recall_at_10"] <= 1 and row["mAP_delta_lo"] <= row["mAP_delta"] <= row["mAP_delta_hi"]
        sizes = sorted(map(int, row["latency"]))
        assert sizes[-1] == found["total_images"] and len(sizes) == 3
        timing = row["latency"][str(sizes[-1])]
        assert timing["1"]["p90_ms"] >= timing["1"]["p50_ms"] > 0 and timing["batch"]["queries"] == 32
    assert rows["IVF4,Flat"]["parameters"] == {"nprobe": 2} and rows["HNSW8"]["parameters"] == {"efSearch": 100}
    # Flat holds every vector in float32: building it adds at least their bytes.
    assert flat["memory_mb"] * 1e6 >= 4 * 32 * found["total_images"]
    assert all(isinstance(row["memory_mb"], float) for row in rows.values())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not Path("/proc/self/statm").exists(),
                    reason="reads Linux's /proc; hands memory back through glibc's allocator")
def test_memory_freed_before_a_reading_is_not_counted():
    before = settled_resident_bytes()
    blocks = [np.ones(1024) for _ in range(8192)]  # 64 MiB in 8 KiB pieces of the allocator's heap
    assert settled_resident_bytes() - before >= 60 * 2**20
    last = blocks[-1]  # kept, so that the allocator cannot hand the rest back by itself
    del blocks
    assert settled_resident_bytes() - before < 8 * 2**20 and last.sum() == 1024


@pytest.mark.parametrize("factory, message", [
    ("IVF1024", "'IVF1024' is not a FAISS factory string reidquant searches with"),
    ("IVF100000,Flat", "FAISS cannot build 'IVF100000,Flat' on 700 vectors"),
])
def test_an_index_that_cannot_be_built_is_one_line(features, factory, message):
    mat, npy, _, _ = features
    with pytest.raises(ReidQuantError) as error:
        search_gallery(mat, npy, ["Flat", factory], k=10, nprobe=1, ef_search=16, threads=1)
    assert message in str(error.value) and "\n" not in str(error.value)


SEARCH = ("search={variants: [fp32], shards: 4, k: 50, distractors: {count: 40}, "
          "indexes: [Flat, SQfp16, SQ8, PQ8x4, 'IVF2,Flat', HNSW8]}")


def test_the_search_stage_embeds_distractors_in_shards(finished, tmp_path):
    project, _ = finished
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    jobs = dry_run_jobs(copy, "results/search/summary.csv", "--config", SEARCH)
    # fp32 on cpu and on cuda, whose jobs decide on their node whether there is a GPU.
    assert jobs == {"synthetic_distractors": 1, "distractor_shard": 8, "distractor_gather": 2, "search": 2,
                    "search_summary": 1}
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((copy / "results/fp32/cpu/distractors.json").read_text())
    assert record["source"] == "synthetic" and record["count"] == 40 and record["per_shard"] == [10, 10, 10, 10]
    text = (copy / "results/search/summary.md").read_text()
    assert "### fp32 / cpu" in text and "| SQfp16 |" in text and "40 synthetic distractors" in text
    assert "| build s | memory MB |" in text
    if not shutil.which("nvidia-smi"):
        assert "- fp32 / cuda: no CUDA device (decided on node " in text
    header = (copy / "results/search/summary.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["dataset", "weights", "variant", "device", "index", "distractor_source"]
    for plot in ("search_accuracy_vs_bytes", "search_latency_vs_size"):
        assert (copy / "results/plots" / f"{plot}.png").stat().st_size > 10_000
    # A run killed while shard 2 was being embedded: its output never written (a staging file
    # of its write left behind), nothing after it made yet, the other shards done. Only that
    # shard and what it feeds run again, and the embeddings come out the same.
    embeddings = np.load(copy / "results/fp32/cpu/distractors.npy")
    shard = copy / "results/fp32/cpu/distractors/2-of-4.npy"
    for made in (shard, *(copy / "results/fp32/cpu").glob("distractors.*"), copy / "results/fp32/cpu/search.json",
                 copy / "results/search/summary.csv"):
        made.unlink()
    (shard.parent / ".2-of-4.npy.abcd1234").write_bytes(b"half")
    jobs = dry_run_jobs(copy, "results/search/summary.csv", "--config", SEARCH)
    assert jobs == {"distractor_shard": 1, "distractor_gather": 1, "search": 1, "search_summary": 1}
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.load(copy / "results/fp32/cpu/distractors.npy"), embeddings)
    assert not (shard.parent / ".2-of-4.npy.abcd1234").exists()


def test_a_bad_factory_string_stops_the_plan_naming_the_field(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", "search={indexes: [Flat, IVF64]}")
    assert result.returncode == 1
    assert "reidquant: error: config field search.indexes.1: 'IVF64' does not match" in result.stderr


def test_a_search_variant_the_config_does_not_have_is_one_line(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", "search={variants: [int9]}")
    assert result.returncode == 1
    assert "reidquant: error: config field search.variants: 'int9' is not a variant of this config" in result.stderr
