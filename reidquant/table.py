"""The comparison table: one row per (variant, device), against fp32 on the same device.

Speedups come from each variant's own job, where it was timed in alternating rounds with
fp32; accuracy figures carry bootstrap intervals over queries, and differences to fp32 a
paired bootstrap on the same queries. The columns are defined here once, for the csv, the
markdown and the plots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reidquant.configcheck import REFERENCE
from reidquant.devices import as_node, cpu_isa, cpu_model
from reidquant.errors import ReidQuantError
from reidquant.jsonio import read_json
from reidquant.stats import bootstrap_interval
from reidquant.variants import as_built, labels, verify_artifact

COLUMNS = ["dataset", "weights", "variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s",
           "extract_img_per_s", "speedup_vs_fastest_fp32", "speedup", "rank1", "rank5", "rank10", "mAP",
           "mAP_noninterp", "mINP", "mAP_delta", "cos_mean", "cos_min", "top1_agreement", "device_name", "cpu_model",
           "cpu_isa", "threads", "torch"]
# Deployment columns, for each latency batch size b (``benchmark.latency_batches``) ...
LATENCY = ["latency_b{b}_ms", "latency_b{b}_p90_ms", "latency_speedup_b{b}_vs_fastest_fp32",
           "latency_speedup_b{b}_vs_fastest_fp32_lo", "latency_speedup_b{b}_vs_fastest_fp32_hi", "fastest_fp32_b{b}",
           "latency_speedup_b{b}", "latency_speedup_b{b}_lo", "latency_speedup_b{b}_hi"]
# ... then once per row.
DEPLOYMENT = ["first_embedding_s", "mem_mb"]
EXTRA = ["arch", "type", "speedup_vs_fastest_fp32_lo", "speedup_vs_fastest_fp32_hi", "fastest_fp32",
         "speedup_lo", "speedup_hi", "rank1_lo", "rank1_hi", "mAP_lo", "mAP_hi", "mAP_delta_lo", "mAP_delta_hi",
         "rank1_delta", "rank1_delta_lo", "rank1_delta_hi", "top10_overlap", "compile_s", "build_compile_s", "quantize_s",
         "calibration_images", "float_layers", "num_query", "num_valid_query", "num_images", "height", "width", "size_bytes",
         "batch_size", "timing_copies", "timed_rounds", "load_s", "cuda_mem_mb", "within_budget", "pareto"]
SPEEDUPS = ("speedup", "speedup_lo", "speedup_hi")


def latency_batches(table: pd.DataFrame) -> list[int]:
    """The latency batch sizes a table has columns for, smallest first."""
    return sorted(int(c[len("latency_b"):-len("_ms")]) for c in table.columns
                  if c.startswith("latency_b") and c.endswith("_ms") and "_p90" not in c)


def columns(batches, shapes) -> list[str]:
    """The table's columns, in order, for latency ``batches`` and the compiled ``shapes``."""
    latency = [name.format(b=b) for b in batches for name in LATENCY]
    return COLUMNS + latency + DEPLOYMENT + EXTRA + [f"compile_b{b}_s" for b in shapes]


def deployment(timing: dict, reference: bool) -> dict:
    """A row's latency, cold-start and memory figures, and its compile time for each shape."""
    row = {"first_embedding_s": timing.get("first_embedding_s"), "load_s": timing.get("load_s"),
           "mem_mb": timing.get("mem_mb"), "cuda_mem_mb": timing.get("cuda_mem_mb"),
           f"compile_b{timing['batch_size']}_s": timing["compile_s"]}
    for b, calls in timing["latency"].items():
        row.update({f"latency_b{b}_ms": calls["median_ms"], f"latency_b{b}_p90_ms": calls["p90_ms"]})
        # The throughput batch may be a latency batch too: its shape compiled at the first of them.
        row[f"compile_b{b}_s"] = max(calls["compile_s"], row.get(f"compile_b{b}_s", 0.0))
        for key in SPEEDUPS:  # speedup, speedup_lo, speedup_hi -> latency_speedup_b{b}, ..._lo, ..._hi
            row[f"latency_speedup_b{b}{key.removeprefix('speedup')}"] = 1.0 if reference else calls[key]
    # Every shape's compilation, paid once before any timing; the throughput and a latency
    # batch may be one shape.
    row["compile_s"] = sum(v for k, v in row.items() if k.startswith("compile_b"))
    return row


def check_provenance(record: dict, path, key: str, expected: str) -> None:
    """A row is labelled with this run's ``dataset`` and ``weights`` only if its job recorded
    having been made from them: numbers never appear under a label they did not come from."""
    made_from = record.get(key)
    if made_from != expected:
        raise ReidQuantError(f"{path}: made from {key} {made_from!r}, but this run's {key} is {expected!r}; "
                             f"its row would be mislabelled (rerun that job, e.g. with --forcerun)")


def check_labels(t: dict, q: dict, spec: dict, device: str, t_path, q_path) -> None:
    """A row's labels are what its spec, its build and the CPU its job recorded give, and its
    figures were measured on the artifact its build recorded; anything else in the extraction's
    record ``t`` (at ``t_path``) is one line: numbers never appear under a label they did not
    come from."""
    rerun = "it was edited or comes from another run (rerun that job, e.g. with --forcerun)"
    for record, path in ((t, t_path), (q, q_path)):
        if "files_sha256" not in record or (record is t and "cpu_identity" not in t):
            raise ReidQuantError(f"{path}: written by an older reidquant (no artifact sha256s or CPU identity); "
                                 f"rerun that job")
    if t["files_sha256"] != q["files_sha256"]:
        raise ReidQuantError(f"{t_path}: measured another artifact than the one {q_path} records; {rerun}")
    built = as_built(spec, q, q_path)
    try:
        with as_node(t["cpu_identity"]):
            expected = {"cpu_model": cpu_model(), "cpu_isa": cpu_isa(), **labels(built)}
    except ReidQuantError as error:  # an identity that is not one
        raise ReidQuantError(f"{t_path}: {error}; {rerun}") from None
    if device == "cpu":
        expected["device_name"] = expected["cpu_model"]
    expected.update(build_cpu_model=q["cpu_model"], build_cpu_isa=q["cpu_isa"],
                    saturation_guard=q.get("saturation_guard"))
    # A compiled program its node could not run was compiled there instead: the runner says so.
    fallback = t.get("runtime_fallback")
    if fallback and t["runtime"] == fallback and fallback in FALLBACK_RUNTIMES.get(expected["runtime"], ()):
        expected["runtime"] = fallback
    for key, value in expected.items():
        if t.get(key) != value:
            raise ReidQuantError(f"{t_path}: {key} {t.get(key)!r} is not what its spec, its build ({q_path}) and "
                                 f"its recorded CPU give ({value!r}); {rerun}")


# The runtime a row falls back to where its node cannot run what its build compiled.
FALLBACK_RUNTIMES = {"torch+aotinductor": ("torch+inductor",)}


def rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
         select: dict | None = None, specs: dict | None = None, model_paths=None) -> pd.DataFrame:
    """The table: one row per job, with the ``select`` budget (``min_cos``, ``max_mAP_drop``)
    marked in ``within_budget`` and the latency/accuracy Pareto front in ``pareto``.

    With ``specs`` (variant -> spec), each row's labels are checked against them, its build and
    its CPU (``check_labels``); with ``model_paths`` (one per job), each artifact against the
    sha256s its build recorded."""
    records, per_query, batches, rounds = [], {}, set(), {}
    models = model_paths if model_paths is not None else [None] * len(jobs)
    for (variant, device), q_path, t_path, m_path, model in zip(jobs, quantize_paths, timing_paths, metrics_paths,
                                                                 models):
        q, t, m = read_json(q_path), read_json(t_path), read_json(m_path)
        check_provenance(q, q_path, "weights", weights)
        check_provenance(q, q_path, "dataset", dataset)
        check_provenance(t, t_path, "dataset", dataset)
        if "not_run" in t:
            continue  # its node could not run it: not_run() lists it
        if "latency" not in t or "cpu_isa" not in t:
            raise ReidQuantError(f"{t_path}: written by an older reidquant (no latency timings or CPU "
                                 f"instruction set); rerun that job")
        if model is not None:
            verify_artifact(model, q_path)
        if specs is not None:
            check_labels(t, q, specs[variant], device, t_path, q_path)
        batches.add(tuple(sorted(map(int, t["latency"]))))
        rounds[(variant, device)] = round_speedups(t, t_path, reference=variant == REFERENCE)
        per_query[(variant, device)] = ({k: np.asarray(v, dtype=np.float64) for k, v in m["per_query"].items()},
                                        m_path)
        reference = variant == REFERENCE
        records.append({
            "dataset": dataset, "weights": weights, "variant": variant, "device": device,
            "arch": q["arch"], "type": q["type"], "precision": t["precision"], "runtime": t["runtime"], "size_mb": q["size_bytes"] / 1e6, "size_bytes": q["size_bytes"],
            "model_img_per_s": t["model_img_per_s"], "extract_img_per_s": t["extract_img_per_s"],
            "batch_size": t["batch_size"], "timing_copies": t.get("timing_copies", 0),
            # the fewest timed rounds behind any of its speed figures
            "timed_rounds": min([len(t["batch_s"]), *(len(calls["call_s"]) for calls in t["latency"].values())]),
            **{k: 1.0 if reference else t[k] for k in SPEEDUPS},
            **{k: m.get(k) for k in ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP", "cos_mean",
                                     "cos_min", "top1_agreement", "top10_overlap", "num_query",
                                     "num_valid_query")},
            "device_name": t["device_name"], "cpu_model": t["cpu_model"], "cpu_isa": t["cpu_isa"],
            "threads": t["threads"], "torch": t["torch"],
            **deployment(t, reference), "quantize_s": q.get("quantize_s"),
            # Compiled ahead of time by the build (PT2E's package); compile_s is what loading compiles.
            "build_compile_s": q.get("compile_s"),
            "calibration_images": q.get("calibration_images"),
            "float_layers": len(q["float_layers"]) if "float_layers" in q else None, "num_images": t.get("num_images"),
            "height": q.get("height"), "width": q.get("width"),
        })
    if not records:
        raise ReidQuantError("no row ran: every extraction job recorded that its node could not run it ("
                             + "; ".join(f"{v} / {d}: {r}" for v, d, r in not_run(jobs, timing_paths)) + ")")
    table = pd.DataFrame.from_records(records)
    if len(batches) > 1:
        raise ReidQuantError(f"the timings were measured at different latency batch sizes ({sorted(batches)}); "
                             f"rerun the extraction jobs with one benchmark.latency_batches")
    fp32 = table[table["variant"] == REFERENCE].set_index("device")
    base = fp32.reindex(table["device"])
    table["size_ratio"] = table["size_bytes"].to_numpy() / base["size_bytes"].to_numpy()
    table["mAP_delta"] = (table["mAP"].to_numpy() - base["mAP"].to_numpy()) * 100
    table["rank1_delta"] = (table["rank1"].to_numpy() - base["rank1"].to_numpy()) * 100
    for i, (variant, device) in enumerate(zip(table["variant"], table["device"])):
        values, path = per_query[(variant, device)]
        reference, reference_path = per_query[(REFERENCE, device)]
        if len(values["ap"]) != len(reference["ap"]):
            raise ReidQuantError(f"{path}: {len(values['ap'])} valid queries but {reference_path} has "
                                 f"{len(reference['ap'])}; they were not scored on the same images")
        for metric, key in (("rank1", "rank1"), ("mAP", "ap")):
            table.loc[i, [f"{metric}_lo", f"{metric}_hi"]] = bootstrap_interval(values[key])
            table.loc[i, [f"{metric}_delta_lo", f"{metric}_delta_hi"]] = \
                np.array(bootstrap_interval(values[key] - reference[key])) * 100
    fp32_rows = table["variant"] == REFERENCE
    table.loc[fp32_rows, ["cos_mean", "cos_min", "top1_agreement", "top10_overlap"]] = 1.0
    against_fastest_fp32(table, [rounds[key] for key in zip(table["variant"], table["device"])])
    table["within_budget"] = within_budget(table, **(select or {}))
    table["pareto"] = pareto_front(table)
    shapes = sorted(int(c[len("compile_b"):-2]) for c in table.columns if c.startswith("compile_b"))
    return table[columns(sorted(next(iter(batches))), shapes)]


def round_speedups(t: dict, path, reference: bool) -> dict[str, np.ndarray]:
    """A row's per-round speed ratios to eager fp32, timed side by side in its job: at the
    throughput batch (``"throughput"``) and at each latency batch (``"1"``, ``"8"``, ...)."""
    timed = {"throughput": t, **t["latency"]}
    if reference:
        return {key: np.ones(1) for key in timed}
    if any("round_speedups" not in calls for calls in timed.values()):
        raise ReidQuantError(f"{path}: written by an older reidquant (no per-round speedups); rerun that job")
    return {key: np.asarray(calls["round_speedups"], dtype=np.float64) for key, calls in timed.items()}


def ratio_between(own: np.ndarray, base: np.ndarray) -> tuple[float, float, float]:
    """How many times faster a row is than another, both timed against eager fp32 in rounds of
    their own jobs (``own`` and ``base``, the per-round ratios): the quotient of the medians,
    and the 10th and 90th percentile of the quotients of every pair of rounds (the eager fp32
    both were timed against cancels; the two jobs' rounds are independent)."""
    pairs = (own[:, None] / base[None, :]).ravel()
    return float(np.median(own) / np.median(base)), float(np.percentile(pairs, 10)), float(np.percentile(pairs, 90))


def against_fastest_fp32(table: pd.DataFrame, rounds: list[dict]) -> None:
    """Each row's speed against the fastest fp32 row of its device, the one a deployer would
    ship instead, at the throughput batch and at each latency batch: ``speedup_vs_fastest_fp32``
    and ``latency_speedup_b{b}_vs_fastest_fp32`` (``_lo``, ``_hi``: ``ratio_between``), and
    which row that is (``fastest_fp32``, ``fastest_fp32_b{b}``). The fastest is chosen by
    its speedup over eager fp32, timed side by side in its own job, not by its raw speed,
    which drifts between jobs."""
    speeds = [("throughput", "speedup", "speedup_vs_fastest_fp32", "fastest_fp32")] + [
        (str(b), f"latency_speedup_b{b}", f"latency_speedup_b{b}_vs_fastest_fp32", f"fastest_fp32_b{b}")
        for b in latency_batches(table)]
    for key, eager, column, named in speeds:
        for _, group in table.groupby("device", sort=False):
            fp32 = group[group["precision"] == "fp32"]
            fastest = fp32[eager].idxmax()
            for i in group.index:
                value = (1.0, 1.0, 1.0) if i == fastest else ratio_between(rounds[i][key], rounds[fastest][key])
                table.loc[i, [column, f"{column}_lo", f"{column}_hi"]] = value
                table.loc[i, named] = table.loc[fastest, "variant"]


def budget_misses(row, min_cos: float = 0.995, max_mAP_drop: float = 1.0, min_rounds: int = 5) -> list[str]:
    """What keeps a row out of the fidelity budget: a worst cosine to fp32 below ``min_cos``,
    an mAP more than ``max_mAP_drop`` points below fp32's (judged on the point estimate
    ``mAP_delta``), a speed timed in fewer than ``min_rounds`` rounds. Empty: within the budget."""
    misses = []
    if row.get("timed_rounds", min_rounds) < min_rounds:
        misses.append(f"timed in {row['timed_rounds']} rounds")
    if row["cos_min"] < min_cos:
        misses.append(f"cos_min {row['cos_min']:.4f}")
    if row["mAP_delta"] < -max_mAP_drop:
        misses.append(f"mAP {row['mAP_delta']:+.2f}")
    return misses


def not_run(jobs, timing_paths) -> list[tuple[str, str, str]]:
    """(variant, device, reason) for each job whose node could not run it, with the node and its CPU."""
    found = []
    for (variant, device), path in zip(jobs, timing_paths):
        record = read_json(path).get("not_run")
        if record:
            found.append((variant, device, f"{record['reason']} (decided on node {record['node']}, "
                                           f"{record['cpu_model']}, int8 instructions {record['cpu_isa']})"))
    return found


def within_budget(table: pd.DataFrame, min_cos: float = 0.995, max_mAP_drop: float = 1.0,
                  min_rounds: int = 5) -> pd.Series:
    """Rows that ``budget_misses`` finds nothing wrong with."""
    return table.apply(lambda row: not budget_misses(row, min_cos, max_mAP_drop, min_rounds), axis=1).astype(bool)


def pareto_front(table: pd.DataFrame, speed: str | None = None) -> pd.Series:
    """Rows that no other row on their device beats on both ``speed`` (by default the
    smallest-batch latency speedup) and ``mAP_delta`` (at least as good on both, better on one)."""
    speed = speed or f"latency_speedup_b{latency_batches(table)[0]}_vs_fastest_fp32"
    front = pd.Series(True, index=table.index)
    for i, row in table.iterrows():
        rivals = table[(table["device"] == row["device"]) & (table.index != i)]
        dominated = ((rivals[speed] >= row[speed]) & (rivals["mAP_delta"] >= row["mAP_delta"])
                     & ((rivals[speed] > row[speed]) | (rivals["mAP_delta"] > row["mAP_delta"])))
        front[i] = not dominated.any()
    return front
