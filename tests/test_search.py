"""The gallery side: FAISS indexes over gallery plus distractors, scored with the exact protocol."""

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import copied, dry_run_jobs, market_like, snakemake
from reidquant.devices import settled_resident_bytes
from reidquant.errors import ReidQuantError
from reidquant.evaluate import evaluate
from reidquant.pipeline import gather_distractors
from reidquant.search import build_index, evaluate_scores, rank_scores, recalls, search_gallery, top


@pytest.fixture(scope="module")
def finished(finished_run, tmp_path_factory):
    """This file's tests run snakemake in the finished run and edit it: a copy of their own."""
    return copied(finished_run, tmp_path_factory)


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
    # Flat holds every vector in float32: building it adds their bytes, less at most one page the
    # allocator already had (resident memory is counted in pages; these are 22 of them).
    assert flat["memory_mb"] * 1e6 >= 4 * 32 * found["total_images"] - os.sysconf("SC_PAGE_SIZE")
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


SEARCH = ("search={variants: [fp32], shards: 2, k: 50, nprobe: 2, distractors: {count: 40}, "
          "indexes: [Flat, SQfp16, SQ8, PQ8x4, 'IVF2,Flat', HNSW8]}")


def test_the_search_stage_embeds_distractors_in_shards(finished, tmp_path):
    project, _ = finished
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    jobs = dry_run_jobs(copy, "results/search/summary.csv", "--config", SEARCH)
    # fp32 on cpu and on cuda, whose jobs decide on their node whether there is a GPU.
    assert jobs == {"synthetic_distractors": 1, "distractor_shard": 4, "distractor_gather": 2, "search": 2,
                    "search_summary": 1}
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((copy / "results/fp32/cpu/distractors.json").read_text())
    assert record["source"] == "synthetic" and record["count"] == 40 and record["per_shard"] == [20, 20]
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
    shard = copy / "results/fp32/cpu/distractors/2-of-2.npy"
    for made in (shard, *(copy / "results/fp32/cpu").glob("distractors.*"), copy / "results/fp32/cpu/search.json",
                 copy / "results/search/summary.csv"):
        made.unlink()
    (shard.parent / ".2-of-2.npy.abcd1234").write_bytes(b"half")
    jobs = dry_run_jobs(copy, "results/search/summary.csv", "--config", SEARCH)
    assert jobs == {"distractor_shard": 1, "distractor_gather": 1, "search": 1, "search_summary": 1}
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.load(copy / "results/fp32/cpu/distractors.npy"), embeddings)
    assert not (shard.parent / ".2-of-2.npy.abcd1234").exists()
    # A shard damaged after it was written: cut short, or embeddings of another width in it. The
    # gather names it in one line and removes it; the next run embeds that shard again.
    # (each damage: test_a_broken_shard_is_one_line_and_removed)
    shard.write_bytes(shard.read_bytes()[:500])
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    errors = {line for line in result.stderr.splitlines() if line.startswith("reidquant: error: ")}
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (error,) = errors
    assert error.startswith("reidquant: error: results/fp32/cpu/distractors/2-of-2.npy: not a readable shard (")
    assert error.endswith("; removed it, so that the next run embeds that shard again") and not shard.exists()
    assert not (copy / "results/fp32/cpu/search.json").exists()  # nothing made from it looks up to date
    jobs = dry_run_jobs(copy, "results/search/summary.csv", "--config", SEARCH)
    assert jobs == {"distractor_shard": 1, "distractor_gather": 1, "search": 1, "search_summary": 1}
    result = snakemake(copy, "results/search/summary.csv", "--config", SEARCH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.load(copy / "results/fp32/cpu/distractors.npy"), embeddings)


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:100]), "not a readable shard ("),
    (lambda path: np.save(path, np.zeros((3, 4), np.float32)), "holds 4-d embeddings, the other shards 8-d"),
    (lambda path: np.save(path, np.zeros((6, 4), np.float32)), "holds float32 of shape (6, 4), not the 3 float32"),
    (lambda path: np.save(path, np.zeros((3, 8), np.float64)), "holds float64 of shape (3, 8), not the 3 float32"),
    (lambda path: np.save(path, np.full((3, 8), np.nan, np.float32)), "holds embeddings that are not finite"),
    (lambda path: np.save(path, np.array("not a record")), "holds text that is not a not-run record"),
], ids=["truncated", "width", "count", "dtype", "nan", "text"])
def test_a_broken_shard_is_one_line_and_removed(tmp_path, damage, problem):
    shards = [tmp_path / f"{i}-of-3.npy" for i in (1, 2, 3)]
    for path in shards:
        np.save(path, np.ones((3, 8), np.float32))
    damage(shards[1])
    with pytest.raises(ReidQuantError) as error:
        gather_distractors(shards, tmp_path / "d.npy", tmp_path / "d.json", "synthetic", 9)
    assert str(error.value).startswith(f"{shards[1]}: {problem}")
    assert str(error.value).endswith("; removed it, so that the next run embeds that shard again")
    assert [path.exists() for path in shards] == [True, False, True]
    assert not (tmp_path / "d.npy").exists() and not (tmp_path / "d.json").exists()


def test_a_bad_factory_string_stops_the_plan_naming_the_field(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", "search={indexes: [Flat, IVF64]}")
    assert result.returncode == 1
    assert "reidquant: error: config field search.indexes.1: 'IVF64' does not match" in result.stderr


@pytest.mark.parametrize("settings, message", [
    ({"indexes": ["Flat", "HNSW0"]}, "search.indexes.1: 'HNSW0': HNSW's links per node must be from 2 to 1024, not 0"),
    ({"indexes": ["Flat", "PQ8x0"]}, "search.indexes.1: 'PQ8x0': PQ's bits per code must be from 1 to 16, not 0"),
    ({"indexes": ["HNSW8,PQ8x0"]}, "search.indexes.0: 'HNSW8,PQ8x0': PQ's bits per code must be from 1 to 16"),
    ({"indexes": ["IVF0,Flat"]}, "search.indexes.0: 'IVF0,Flat': IVF's lists must be from 1 to 2147483647, not 0"),
    ({"indexes": ["PQ7"]}, "search.indexes.0: 'PQ7': 7 sub-quantizers do not divide the embedding size 512"),
    ({"indexes": ["OPQ16_64,PQ12"]}, "'OPQ16_64,PQ12': 12 sub-quantizers do not divide OPQ's output size 64"),
    ({"indexes": ["PQ16x8fs"]}, "'PQ16x8fs': a fast-scan PQ (fs) codes 4 bits per sub-quantizer"),
    ({"indexes": ["IVF4,Flat"], "nprobe": 16}, "search.nprobe: 16 is more than the 4 lists of index 'IVF4,Flat'"),
])
def test_search_settings_faiss_cannot_take_are_one_line_naming_the_field(settings, message):
    from reidquant.search import check_search_settings

    with pytest.raises(ReidQuantError) as error:
        check_search_settings({"indexes": ["Flat"], "nprobe": 1, **settings}, dim=512)
    assert str(error.value).startswith("config field search.") and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("settings, message", [
    ("{indexes: [Flat, 'HNSW8,PQ8x0']}", "search.indexes.1: 'HNSW8,PQ8x0': PQ's bits per code must be from 1 to 16"),
    ("{indexes: [PQ7]}", "search.indexes.0: 'PQ7': 7 sub-quantizers do not divide the embedding size 512"),
    ("{ef_search: 10000000000}", "search.ef_search: 10000000000 is greater than the maximum of 100000"),
])
def test_search_settings_faiss_cannot_take_stop_the_plan(finished, settings, message):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", f"search={settings}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("reidquant: error: ")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("reidquant: error: config field search.") and message in errors[0], errors[0]


def test_a_search_variant_that_runs_on_no_device_is_said_while_planning(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", "devices=[cpu]",
                       "variants={fp16: {type: half, dtype: float16}}", "search={variants: [fp16]}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("reidquant: error: ")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("reidquant: error: config field search.variants: 'fp16' runs on no device of this "
                                "run (on cpu: ")


def test_a_search_variant_the_config_does_not_have_is_one_line(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/search/summary.csv", "--config", "search={variants: [int9]}")
    assert result.returncode == 1
    assert "reidquant: error: config field search.variants: 'int9' is not a variant of this config" in result.stderr
