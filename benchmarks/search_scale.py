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
import statistics
import time
from pathlib import Path

import numpy as np

from reidquant.devices import available_cores, cpu_isa, cpu_model, settled_resident_bytes
from reidquant.jsonio import write_text
from reidquant.matfile import load_features
from reidquant.search import build_index, code_bytes, index_bytes, recalls, set_search_parameters

SIZES = (10_000, 100_000, 1_000_000)
INDEXES = ("Flat", "SQfp16", "SQ8", "IVF1024,PQ32", "OPQ48_384,IVF1024,PQ48", "HNSW32,SQ8")
# Too slow to build here at a million (the graph's construction on 2 cores); said in the output.
SKIP_AT = {1_000_000: ("HNSW32,SQ8",)}
IMAGES_PER_IDENTITY = 6
QUERIES = 1000
ROUNDS = 50
TRAIN_POINTS = 40_000  # what IVF and PQ train on: FAISS asks for 39 k-means samples per IVF list


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


def timed_rounds(setups: dict, queries: np.ndarray, batch: int, ef_search: int) -> dict:
    """Per (index, probes) setup, milliseconds of one query's and one batch's search (first 10
    results), in interleaved rounds; each setup's turn starts with an untimed search, so that no
    setup is timed with the caches and threads the one before it left."""
    times = {label: {"1": [], "batch": []} for label in setups}
    for round_ in range(ROUNDS):
        one, many = queries[round_ % len(queries)][None], queries[(round_ * batch) % (len(queries) - batch):][:batch]
        for label, (index, probes) in setups.items():
            set_search_parameters(index, probes, ef_search, 10)
            index.search(queries[(round_ + 1) % len(queries)][None], 10)
            for kind, chunk in (("1", one), ("batch", many)):
                start = time.perf_counter()
                index.search(chunk, 10)
                times[label][kind].append((time.perf_counter() - start) * 1000)
    return {label: {kind: (statistics.median(v), float(np.percentile(v, 90))) for kind, v in found.items()}
            for label, found in times.items()}


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, default=Path("results/ov_int8/cpu/features.mat"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--indexes", nargs="+", default=list(INDEXES))
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32],
                        help="IVF lists probed; each a row of its own")
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
             f"rounds, each setup's turn after an untimed search; IVF probes {' or '.join(map(str, args.nprobe))} "
             f"lists, HNSW searches {args.ef_search} candidates; IVF and PQ train on {TRAIN_POINTS:,} of the "
             "images.", "",
             "| images | index | code bytes | bytes per image (all) | memory MB | build s | 1 query p50 (p90) ms | "
             f"batch of {args.batch} p50 ms | recall@10 | 1-recall@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in args.sizes:
        gallery, queries = draw(size)
        exact = faiss.IndexFlatIP(gallery.shape[1])
        exact.add(gallery)
        _, truth = exact.search(queries, 10)
        training = gallery[np.random.default_rng(1).choice(size, min(size, TRAIN_POINTS), replace=False)]
        setups, rows, index = {}, {}, None
        for name in args.indexes:
            if name in SKIP_AT.get(size, ()):
                rows[name] = None
                continue
            before = settled_resident_bytes()
            index, build_s = build_index(name, gallery, f"index {name}", training=training)
            memory_mb = (settled_resident_bytes() - before) / 1e6
            probed = "nprobe" in set_search_parameters(index, args.nprobe[0], args.ef_search, 10)
            for probes in args.nprobe if probed else args.nprobe[:1]:
                label = f"{name} (nprobe {probes})" if probed else name
                set_search_parameters(index, probes, args.ef_search, 10)
                _, found = index.search(queries, 10)
                overlap, nearest = recalls(found, truth)
                rows[label] = {"code": code_bytes(index), "all": index_bytes(index), "build_s": build_s,
                               "memory_mb": memory_mb, "recall": overlap, "one_recall": nearest}
                setups[label] = (index, probes)
        timings = timed_rounds(setups, queries, args.batch, args.ef_search)
        for label, row in rows.items():
            if row is None:
                lines.append(f"| {size:,} | {label} | | | | | not built: its graph takes too long to build on "
                             f"{threads} cores | | | |")
                continue
            (p50, p90), (batch_p50, _) = timings[label]["1"], timings[label]["batch"]
            code = "" if row["code"] is None else f"{row['code']:.0f}"
            lines.append(f"| {size:,} | {label} | {code} | {row['all']:.0f} | {row['memory_mb']:.0f} | "
                         f"{row['build_s']:.1f} | {p50:.2f} ({p90:.2f}) | {batch_p50:.1f} | {row['recall']:.3f} | "
                         f"{row['one_recall']:.3f} |")
        print("\n".join(lines[-len(rows):]), flush=True)
        del setups, index, gallery, training, exact
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
