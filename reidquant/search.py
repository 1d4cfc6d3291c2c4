"""The gallery side: each variant's embeddings stored and searched by FAISS indexes.

A deployed re-ID system keeps every gallery embedding and searches it for each query; at city
scale that is quantization again (fp16, int8 scalar quantizers, product quantization) and
approximate search (IVF, HNSW). For each index, named by its FAISS factory string, the gallery
plus distractors is indexed (inner product: the embeddings are L2-normalised) and each query
is scored with the Market-1501 protocol on the ranking the index returns: the ``k`` images it
returns, by its scores, then every image it does not return, its true matches last, as a
deployed system never shows them (each such match adds at most its share of the gallery to the
AP). Against exact search on the same embeddings returning the same ``k`` (``Flat``), so that a
difference is the index's alone: mAP and rank-1 with paired intervals, the share of exact
search's top 10 found in the index's top 10, and FAISS's 1-recall@10 (exact search's nearest
neighbour among the index's first 10). What returning ``k`` costs exact search itself is
recorded apart (``exact.mAP_all_images``).
"""

from __future__ import annotations

import re
import statistics
import time

import numpy as np

from reidquant.errors import ReidQuantError

EXACT = "Flat"
# One query, and a batch of them: what a tracker and a batch job call an index with.
LATENCY_ROUNDS = 30
LATENCY_BATCH = 32
TOP = 10


# FAISS reads sizes into C ints: a larger setting overflows into nonsense instead of failing.
INT32_MAX = 2**31 - 1
_CODE = r"(?P<{p}code>Flat|SQfp16|SQbf16|SQ8|SQ6|SQ4|PQ(?P<{p}pq_m>[0-9]+)(?:x(?P<{p}pq_bits>[0-9]+))?(?P<{p}fs>fs)?)"
# The code's groups appear once per place it may stand (behind IVF, behind HNSW, alone): i_, h_, f_.
_FACTORY = re.compile(r"(?:OPQ(?P<opq_m>[0-9]+)(?:_(?P<opq_d>[0-9]+))?,)?"
                      r"(?:IVF(?P<ivf>[0-9]+)," + _CODE.format(p="i_") + r"|HNSW(?P<hnsw>[0-9]+)(?:,"
                      + _CODE.format(p="h_") + r")?|" + _CODE.format(p="f_") + ")")
EXAMPLES = "e.g. Flat, SQfp16, SQ8, PQ64, IVF1024,PQ32, HNSW32"


def parse_factory(factory: str, where: str) -> dict:
    """The parts of a factory string the search stage accepts (``search.indexes``): flat codes
    (exact, scalar or product quantized), optionally behind an inverted file or an HNSW graph,
    after OPQ; each size checked as FAISS needs it (positive, within a C int), so that FAISS
    never meets one it aborts or divides by zero on."""
    found = _FACTORY.fullmatch(factory) if isinstance(factory, str) else None
    if not found:
        raise ReidQuantError(f"{where}: {factory!r} is not a FAISS factory string reidquant searches with "
                             f"({EXAMPLES})")
    groups = {key.split("_", 1)[1] if key[:2] in ("i_", "h_", "f_") else key: value
              for key, value in found.groupdict().items() if value is not None}
    parts = {key: int(value) for key, value in groups.items() if key not in ("code", "fs")}
    parts.update(code=groups.get("code", "Flat"), fast_scan="fs" in groups)
    limits = {"opq_m": (1, INT32_MAX, "OPQ's sub-quantizers"), "opq_d": (1, 65536, "OPQ's output size"),
              "ivf": (1, INT32_MAX, "IVF's lists"), "hnsw": (2, 1024, "HNSW's links per node"),
              "pq_m": (1, 65536, "PQ's sub-quantizers"), "pq_bits": (1, 16, "PQ's bits per code")}
    for key, (low, high, what) in limits.items():
        if key in parts and not low <= parts[key] <= high:
            raise ReidQuantError(f"{where}: {factory!r}: {what} must be from {low} to {high}, not {parts[key]}")
    if parts["fast_scan"] and parts.get("pq_bits", 4) != 4:
        raise ReidQuantError(f"{where}: {factory!r}: a fast-scan PQ (fs) codes 4 bits per sub-quantizer")
    return parts


def check_factory(factory: str, where: str, dim: int | None = None) -> dict:
    """``parse_factory``, and with the embedding size ``dim``, that its product quantizers fit
    it: OPQ's and PQ's sub-quantizers divide the size they split."""
    parts = parse_factory(factory, where)
    if dim is None:
        return parts
    size = parts.get("opq_d", dim)
    what = "OPQ's output size" if "opq_d" in parts else "the embedding size"
    for key in ("opq_m", "pq_m"):
        if key in parts and size % parts[key]:
            raise ReidQuantError(f"{where}: {factory!r}: {parts[key]} sub-quantizers do not divide {what} {size}")
    return parts


def check_search_settings(search: dict, dim: int | None = None) -> None:
    """The config's ``search`` section as FAISS will take it: every factory string, and
    ``nprobe`` no more than the lists of any IVF index (each refusal names its field)."""
    lists = {}
    for position, factory in enumerate(search["indexes"]):
        parts = check_factory(factory, f"config field search.indexes.{position}", dim)
        if "ivf" in parts:
            lists[factory] = parts["ivf"]
    for factory, count in lists.items():
        if search["nprobe"] > count:
            raise ReidQuantError(f"config field search.nprobe: {search['nprobe']} is more than the {count} lists of "
                                 f"index {factory!r}")


def build_index(factory: str, vectors: np.ndarray, where: str = "search index", training: np.ndarray | None = None):
    """An index of ``vectors`` (rows L2-normalised) by its factory string, trained (where it is
    trained: IVF's centroids, PQ's codebooks) on ``training``, by default ``vectors``; the
    seconds its training and adding took."""
    import faiss

    check_factory(factory, where, vectors.shape[1])
    training = vectors if training is None else training
    start = time.perf_counter()
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(training)
        index.add(vectors)
    except RuntimeError as error:  # FAISS says what was wrong in its last line
        raise ReidQuantError(f"{where}: FAISS cannot build {factory!r} on {len(training)} vectors: "
                             f"{str(error).strip().splitlines()[-1]}") from None
    return index, time.perf_counter() - start


def set_search_parameters(index, nprobe: int, ef_search: int, k: int) -> dict:
    """How wide an approximate index searches (IVF's lists probed, HNSW's candidate list, at
    least ``k``); what was set."""
    import faiss

    space, found = faiss.ParameterSpace(), {}
    for name, value in (("nprobe", nprobe), ("efSearch", max(ef_search, k))):
        try:
            space.set_index_parameter(index, name, value)
            found[name] = value
        except RuntimeError:
            continue  # not a parameter of this index
    return found


def index_bytes(index) -> float:
    """Bytes per image the index holds, everything included (codes, ids, graph links, centroids)."""
    import faiss

    return len(faiss.serialize_index(index)) / max(index.ntotal, 1)


def code_bytes(index) -> float | None:
    """Bytes of one image's code, where the index stores codes."""
    try:
        return float(index.sa_code_size())
    except RuntimeError:
        return None


def rank_scores(index, queries: np.ndarray, total: int, k: int) -> np.ndarray:
    """Per query, a score for every gallery image: the index's for the ``k`` it returns, -inf
    for the rest, which then rank after them (``evaluate_scores`` puts true matches last)."""
    scores, ids = index.search(queries, min(k, total))
    full = np.full((len(queries), total), -np.inf, dtype=np.float64)
    rows = np.repeat(np.arange(len(queries)), ids.shape[1])
    found = ids.reshape(-1) >= 0
    full[rows[found], ids.reshape(-1)[found]] = scores.reshape(-1)[found]
    return full


def evaluate_scores(scores: np.ndarray, query_label, query_cam, gallery_label, gallery_cam) -> dict:
    """The Market-1501 protocol on given scores (query x gallery; ties in gallery order). Images
    scored -inf (not returned by an index) rank after every other, their true matches last: an
    image an index does not return is never found, whatever its place in the gallery."""
    from reidquant.evaluate import CMC_DEPTH, _hit_ranks, _summarise
    from reidquant.matfile import as_int_vector

    ql, qc = as_int_vector(query_label), as_int_vector(query_cam)
    gl, gc = as_int_vector(gallery_label), as_int_vector(gallery_cam)
    kept = gl != -1
    scores, gl, gc = scores[:, kept], gl[kept], gc[kept]
    hit_ranks = [np.zeros(0, dtype=np.int64)] * len(ql)
    for q in range(len(ql)):
        same = np.flatnonzero(gl == ql[q])
        same_camera = gc[same] == qc[q]
        if len(same) and not same_camera.all():
            row = scores[q]
            unreturned = np.isneginf(row)
            if unreturned[same].any():
                row = np.where(unreturned, np.finfo(np.float64).min, row)
                row[same[unreturned[same]]] = -np.inf
            hit_ranks[q] = _hit_ranks(row, same, same_camera)
    return _summarise(hit_ranks, min(CMC_DEPTH, len(gl)))


def top(scores: np.ndarray, count: int = TOP) -> np.ndarray:
    """Each query's ``count`` best gallery images, best first (ties in gallery order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :count]


def recalls(found: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """The share of exact search's top 10 in the index's top 10, and FAISS's 1-recall@10: the
    share of queries whose exact nearest neighbour is among the index's first 10."""
    overlap = (found[:, :, None] == exact[:, None, :]).any(axis=2).mean()
    nearest = (found == exact[:, :1]).any(axis=1).mean()
    return float(overlap), float(nearest)


def latencies(index, queries: np.ndarray, rounds: int = LATENCY_ROUNDS, batch: int = LATENCY_BATCH) -> dict:
    """Wall time of one search for one query and for a batch (the first ``TOP`` results each):
    median and 90th percentile in milliseconds, after an untimed call of each."""
    found = {}
    for label, size in (("1", 1), ("batch", min(batch, len(queries)))):
        picks = [queries[(i * size) % len(queries):][:size] for i in range(rounds)]
        picks = [p if len(p) == size else queries[:size] for p in picks]
        index.search(picks[0], TOP)
        times = []
        for chunk in picks:
            start = time.perf_counter()
            index.search(chunk, TOP)
            times.append((time.perf_counter() - start) * 1000)
        found[label] = {"queries": size, "p50_ms": statistics.median(times),
                        "p90_ms": float(np.percentile(times, 90))}
    return found


def gallery_with_distractors(features: dict, distractors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gallery followed by the distractors: identity 0 (always a wrong match) seen by camera
    0 (no query's camera, so never junk)."""
    vectors = np.ascontiguousarray(np.vstack([features["gallery_f"], distractors]), dtype=np.float32)
    labels = np.concatenate([features["gallery_label"], np.zeros(len(distractors), dtype=np.int64)])
    cameras = np.concatenate([features["gallery_cam"], np.zeros(len(distractors), dtype=np.int64)])
    return vectors, labels, cameras


def search_gallery(features_path, distractors_path, indexes, k: int, nprobe: int, ef_search: int,
                   threads: int | None = None) -> dict:
    """Every index of ``indexes`` over the gallery of ``features_path`` (a features .mat) plus
    the distractors of ``distractors_path`` (their embeddings by the same model, ``.npy``),
    against exact search; query latency also at smaller gallery sizes."""
    import faiss
    from tqdm import tqdm

    from reidquant.devices import available_cores, settled_resident_bytes
    from reidquant.matfile import load_features
    from reidquant.stats import bootstrap_interval

    threads = min(threads or available_cores(), available_cores())
    faiss.omp_set_num_threads(threads)
    features = load_features(features_path)
    check_search_settings({"indexes": indexes, "nprobe": nprobe}, features["gallery_f"].shape[1])
    distractors = np.load(distractors_path, allow_pickle=False)
    if distractors.ndim != 2 or distractors.shape[1] != features["gallery_f"].shape[1]:
        raise ReidQuantError(f"{distractors_path}: expected {features['gallery_f'].shape[1]}-d embeddings, got "
                             f"shape {distractors.shape}")
    vectors, labels, cameras = gallery_with_distractors(features, distractors)
    queries = np.ascontiguousarray(features["query_f"], dtype=np.float32)
    ids = (features["query_label"], features["query_cam"], labels, cameras)
    total = len(vectors)
    sizes = sorted({len(features["gallery_f"]), len(features["gallery_f"]) + len(distractors) // 4, total})
    exact_index, _ = build_index(EXACT, vectors)
    exact_all = evaluate_scores(rank_scores(exact_index, queries, total, total), *ids)
    exact_scores = rank_scores(exact_index, queries, total, k)
    exact = evaluate_scores(exact_scores, *ids)
    exact_top = top(exact_scores)
    rows = []
    for factory in tqdm(indexes, desc="indexes", unit="index"):
        before = settled_resident_bytes()
        index, build_s = build_index(factory, vectors, f"search index {factory}")
        after = settled_resident_bytes()
        parameters = set_search_parameters(index, nprobe, ef_search, k)
        scores = rank_scores(index, queries, total, k)
        metrics = evaluate_scores(scores, *ids)
        overlap, nearest = recalls(top(scores), exact_top)
        row = {"index": factory, "bytes_per_image": index_bytes(index), "code_bytes": code_bytes(index),
               "build_s": build_s, "memory_mb": None if before is None else (after - before) / 1e6,
               "parameters": parameters, "mAP": metrics["mAP"], "rank1": metrics["rank1"],
               "recall_at_10": overlap, "one_recall_at_10": nearest, "per_query": metrics["per_query"]}
        for metric, key in (("mAP", "ap"), ("rank1", "rank1")):
            difference = np.asarray(metrics["per_query"][key], float) - np.asarray(exact["per_query"][key], float)
            low, high = bootstrap_interval(difference)
            row.update({f"{metric}_delta": difference.mean() * 100, f"{metric}_delta_lo": low * 100,
                        f"{metric}_delta_hi": high * 100})
        row["latency"] = {str(total): latencies(index, queries)}
        for size in sizes[:-1]:
            # Trained on every image, as a deployment trains once on a large sample and adds its
            # gallery: the gallery alone is too few points for IVF's centroids or PQ's codebooks.
            try:
                smaller, _ = build_index(factory, vectors[:size], f"search index {factory}", training=vectors)
            except ReidQuantError as error:  # too few images to train it on
                row["latency"][str(size)] = {"not_built": str(error)}
                continue
            set_search_parameters(smaller, nprobe, ef_search, k)
            row["latency"][str(size)] = latencies(smaller, queries)
            del smaller
        rows.append(row)
        del index  # before the next one's memory is measured
    return {"gallery_images": len(features["gallery_f"]), "distractors": len(distractors), "total_images": total,
            "queries": len(queries), "k": k, "threads": threads, "faiss": faiss.__version__,
            "exact": {**{key: exact[key] for key in ("mAP", "rank1", "num_valid_query")},
                      "mAP_all_images": exact_all["mAP"], "rank1_all_images": exact_all["rank1"]},
            "indexes": rows}


def search_and_save(features_path, distractors_path, record_path, out, indexes, k: int, nprobe: int,
                    ef_search: int, threads: int | None = None) -> dict:
    """``search_gallery``, with what the distractors were and the machine, into ``out`` (JSON)."""
    from reidquant.devices import cpu_isa, cpu_model
    from reidquant.jsonio import read_json, write_json

    from reidquant.matfile import not_run_record

    record = read_json(record_path)
    not_run = record.get("not_run") or not_run_record(features_path)
    if not_run:  # the node that embedded them could not run the variant: said in the summary
        write_json(out, {"not_run": not_run})
        print(f"not run on node {not_run['node']}: {not_run['reason']}")
        return {"not_run": not_run}
    found = search_gallery(features_path, distractors_path, indexes, k, nprobe, ef_search, threads)
    found.update(distractor_source=record["source"], cpu_model=cpu_model(), cpu_isa=cpu_isa())
    write_json(out, found)
    for row in found["indexes"]:
        print(f"{row['index']}: {row['bytes_per_image']:.0f} bytes per image, mAP {row['mAP']:.4f} "
              f"({row['mAP_delta']:+.3f} points against exact), 1-recall@10 {row['one_recall_at_10']:.3f}, "
              f"{row['latency'][str(found['total_images'])]['1']['p50_ms']:.2f} ms per query")
    return found
