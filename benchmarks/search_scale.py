"""Query latency, memory and recall of FAISS indexes at 10k, 100k and 1M embeddings, on this machine.

    python benchmarks/search_scale.py --features results/ov_int8/cpu/features.mat \
        --out docs/benchmarks/search_scale.md

This machine cannot embed a million images, so the galleries are drawn to match a real one's
statistics: the run's gallery embeddings give the identities' centroids and each image's
spread around its identity's, both estimated as a few principal directions plus an isotropic
rest; each drawn identity is a centroid from the first, each drawn image that centroid plus
spread from the second, L2-normalised. Queries are further images of drawn identities, held
out of the gallery. Exact search (Flat) gives the ground truth: the share of its top 10 in an
index's top 10, and FAISS's 1-recall@10 (its nearest neighbour among the index's first 10).
Every index of a size is built in one process and queried in interleaved rounds, on every core.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import numpy as np

from reidquant.devices import available_cores, cpu_isa, cpu_model, resident_bytes
from reidquant.jsonio import write_text
from reidquant.matfile import load_features
from reidquant.search import code_bytes, index_bytes, recalls, set_search_parameters

SIZES = (10_000, 100_000, 1_000_000)
INDEXES = ("Flat", "SQfp16", "SQ8", "IVF1024,PQ32", "OPQ48_384,IVF1024,PQ48", "HNSW32,SQ8")
# Too slow to build here at a million (the graph's construction on 2 cores); said in the output.
SKIP_AT = {1_000_000: ("HNSW32,SQ8",)}
IMAGES_PER_IDENTITY = 6
QUERIES = 1000
ROUNDS = 50
TRAIN_POINTS = 20_000  # what IVF and PQ train on (k-means samples): about 20 per IVF list, 78 per PQ centroid


def spread(vectors: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, principal directions scaled by their deviation, and the rest's deviation."""
    mean = vectors.mean(axis=0)
    _, singular, directions = np.linalg.svd(vectors - mean, full_matrices=False)
    deviations = singular / np.sqrt(max(len(vectors) - 1, 1))
    kept = min(components, len(deviations))
    rest = float(np.sqrt(np.mean(deviations[kept:] ** 2))) if len(deviations) > kept else 0.0
    return mean, directions[:kept] * deviations[:kept, None], rest


def drawer(features: dict, components: int = 32):
    """A function drawing (n images of n / IMAGES_PER_IDENTITY identities, queries of the first
    QUERIES identities) as the real gallery's statistics say."""
    labels, vectors = features["gallery_label"], features["gallery_f"]
    people = sorted(set(labels[labels > 0]))
    centroids = np.stack([vectors[labels == p].mean(axis=0) for p in people])
    residuals = np.concatenate([vectors[labels == p] - vectors[labels == p].mean(axis=0) for p in people])
    between, within = spread(centroids, components), spread(residuals, components)
    width = vectors.shape[1]

    def sample(rng, count: int, model) -> np.ndarray:
        mean, directions, rest = model
        return (mean + rng.standard_normal((count, len(directions))) @ directions
                + rest * rng.standard_normal((count, width))).astype(np.float32)

    def draw(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        identities = max(-(-size // IMAGES_PER_IDENTITY), QUERIES)
        centre = sample(rng, identities, between)
        owner = np.repeat(np.arange(identities), IMAGES_PER_IDENTITY)[:size]
        gallery = centre[owner] + sample(rng, size, (np.zeros(width), *within[1:]))
        queries = centre[:QUERIES] + sample(rng, QUERIES, (np.zeros(width), *within[1:]))
        for block in (gallery, queries):
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        return np.ascontiguousarray(gallery), np.ascontiguousarray(queries)

    return draw


def timed_rounds(indexes: dict, queries: np.ndarray, batch: int) -> dict:
    """Per index, milliseconds of one query's and one batch's search (first 10 results), in
    interleaved rounds."""
    times = {name: {"1": [], "batch": []} for name in indexes}
    for index in indexes.values():
        index.search(queries[:batch], 10)
    for round_ in range(ROUNDS):
        one, many = queries[round_ % len(queries)][None], queries[(round_ * batch) % (len(queries) - batch):][:batch]
        for name, index in indexes.items():
            for label, chunk in (("1", one), ("batch", many)):
                start = time.perf_counter()
                index.search(chunk, 10)
                times[name][label].append((time.perf_counter() - start) * 1000)
    return {name: {label: (statistics.median(v), float(np.percentile(v, 90))) for label, v in found.items()}
            for name, found in times.items()}


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, default=Path("results/ov_int8/cpu/features.mat"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--indexes", nargs="+", default=list(INDEXES))
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    threads = available_cores()
    faiss.omp_set_num_threads(threads)
    draw = drawer(load_features(args.features))
    lines = [f"`benchmarks/search_scale.py` on {cpu_model()} ({cpu_isa()}), {threads} threads, FAISS "
             f"{faiss.__version__}; galleries drawn to match the statistics of `{args.features}`'s gallery "
             f"({IMAGES_PER_IDENTITY} images per drawn identity), {QUERIES} held-out queries, {ROUNDS} interleaved "
             f"rounds; IVF probes {args.nprobe} lists, HNSW searches {args.ef_search} candidates; IVF and PQ train "
             f"on {TRAIN_POINTS:,} of the images.", "",
             "| images | index | code bytes | bytes per image (all) | memory MB | build s | 1 query p50 (p90) ms | "
             f"batch of {args.batch} p50 ms | recall@10 | 1-recall@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in args.sizes:
        gallery, queries = draw(size)
        exact = faiss.IndexFlatIP(gallery.shape[1])
        exact.add(gallery)
        _, truth = exact.search(queries, 10)
        built, rows = {}, {}
        for name in args.indexes:
            if name in SKIP_AT.get(size, ()):
                rows[name] = None
                continue
            gc.collect()
            before = resident_bytes()
            training = gallery[np.random.default_rng(1).choice(size, min(size, TRAIN_POINTS), replace=False)]
            start = time.perf_counter()
            index = faiss.index_factory(gallery.shape[1], name, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(training)
            index.add(gallery)
            build_s = time.perf_counter() - start
            set_search_parameters(index, args.nprobe, args.ef_search, 10)
            _, found = index.search(queries, 10)
            overlap, nearest = recalls(found, truth)
            rows[name] = {"code": code_bytes(index), "all": index_bytes(index), "build_s": build_s,
                          "memory_mb": (resident_bytes() - before) / 1e6, "recall": overlap, "one_recall": nearest}
            built[name] = index
        timings = timed_rounds(built, queries, args.batch)
        for name in args.indexes:
            row = rows[name]
            if row is None:
                lines.append(f"| {size:,} | {name} | | | | | not built: its graph takes too long to build on "
                             f"{threads} cores | | | |")
                continue
            (p50, p90), (batch_p50, _) = timings[name]["1"], timings[name]["batch"]
            code = "" if row["code"] is None else f"{row['code']:.0f}"
            lines.append(f"| {size:,} | {name} | {code} | {row['all']:.0f} | {row['memory_mb']:.0f} | "
                         f"{row['build_s']:.1f} | {p50:.2f} ({p90:.2f}) | {batch_p50:.1f} | {row['recall']:.3f} | "
                         f"{row['one_recall']:.3f} |")
        print("\n".join(lines[-len(args.indexes):]), flush=True)
        del built, gallery
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
