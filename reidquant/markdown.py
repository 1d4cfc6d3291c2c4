"""The table for people: ``summary.md``'s table, What to ship, the most sensitive layers and
the budgeted builds, each a function of the table or of the builds' records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from reidquant.devices import saturates_int8
from reidquant.jsonio import read_json
from reidquant.sensitivity import most_sensitive
from reidquant.stats import LEVEL
from reidquant.table import budget_misses, latency_batches

def _interval(value, low, high, digits: int) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _delta(value, low, high) -> str:
    """A difference in points with its interval; starred when the interval excludes zero."""
    star = " *" if low > 0 or high < 0 else ""
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]{star}"


def markdown(table: pd.DataFrame, skipped=()) -> str:
    shown = ["variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s", "extract_img_per_s",
             "speedup_vs_fastest_fp32", "speedup", "rank1", "mAP", "rank1_delta", "mAP_delta", "cos_mean",
             "top1_agreement", "compile_s"]
    header = "| " + " | ".join(shown) + " |\n|" + "---|" * len(shown) + "\n"
    lines = []
    for _, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            if column in ("speedup", "speedup_vs_fastest_fp32"):
                cells.append(_interval(value, row[f"{column}_lo"], row[f"{column}_hi"], 2))
            elif column in ("rank1", "mAP"):
                cells.append(_interval(value * 100, row[f"{column}_lo"] * 100, row[f"{column}_hi"] * 100, 1))
            elif column.endswith("_delta"):
                cells.append(_delta(value, row[f"{column}_lo"], row[f"{column}_hi"]))
            elif isinstance(value, float):
                digits = 4 if column == "cos_mean" else 1 if column.endswith(("_per_s", "_s", "mb")) else 3
                cells.append(f"{value:.{digits}f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    first = table.iloc[0]
    note = (f"dataset: {first['dataset']}, weights: {first['weights']}, arch: {first['arch']}, torch {first['torch']}, "
            f"CPU {first['cpu_model']} (int8 instructions: {first['cpu_isa']}), {first['threads']} threads\n\n")
    level = f"{LEVEL:.0%}"
    fastest = ", ".join(f"{device}: {name}" for device, name in
                        table.drop_duplicates("device")[["device", "fastest_fp32"]].itertuples(index=False))
    legend = (f"\nspeedup_vs_fastest_fp32: against the fastest fp32 row of the same device ({fastest}), the fp32 a "
              f"deployer would ship instead; speedup: against eager PyTorch fp32 (the seed's reference), the "
              f"median of per-round ratios timed side by side in the row's own job [10th, 90th percentile of the "
              f"rounds]; the first is derived from the second of both rows (docs/columns.md). rank1 and mAP in %, "
              f"[{level} bootstrap interval over queries]; rank1_delta and mAP_delta in points against fp32 on the same device, [{level} paired "
              f"bootstrap interval]; * marks a difference whose interval excludes zero.\n")
    skipped_queries = int(first["num_query"] - first["num_valid_query"])
    if skipped_queries:
        legend += (f"\n{skipped_queries} of {int(first['num_query'])} queries have no true match in the gallery "
                   f"and are left out of every metric (torchreid and fast-reid do the same; the reference "
                   f"project counts them as misses, so its mAP and Rank@k are ours x "
                   f"{int(first['num_valid_query'])}/{int(first['num_query'])}).\n")
    copies = int(table["timing_copies"].max())
    if copies:
        largest = max(int(table["batch_size"].max()), *latency_batches(table))
        legend += (f"\nThe gallery has fewer images than the largest timing batch ({largest}): it was filled with "
                   f"{copies} copies of its last image, the same for every row.\n")
    if skipped:
        legend += "\nNot run:\n\n" + "".join(f"- {variant} / {device}: {reason}\n"
                                           for variant, device, reason in skipped)
    return note + header + "\n".join(lines) + "\n" + legend


def _verdict(row, min_cos: float, max_mAP_drop: float, min_rounds: int) -> str:
    misses = budget_misses(row, min_cos, max_mAP_drop, min_rounds)
    return "no: " + ", ".join(misses) if misses else "yes"


def _named(row, what: str) -> str:
    return f"**{row['variant']}** ({row['precision']}, {row['runtime']}): {what}"


def int8_outside_budget(int8: pd.DataFrame, b: int, min_cos: float, max_mAP_drop: float, min_rounds: int) -> str:
    """Why no int8 row keeps the budget on this CPU, in one sentence, and the most faithful one."""
    faithful = [row for _, row in int8.iterrows() if not budget_misses(row, min_cos, max_mAP_drop, min_rounds=0)]
    if faithful:  # fidelity kept, speed not measured well enough to act on
        names, rounds = ", ".join(row["variant"] for row in faithful), min(row["timed_rounds"] for row in faithful)
        return (f"No int8 row keeps the budget: the speeds of {names}, which keep its fidelity, were timed in "
                f"{rounds} rounds, fewer than `select.min_rounds` ({min_rounds}); time them in more (`benchmark.repeats`, "
                f"`benchmark.latency_rounds`).")
    isa = int8["cpu_isa"].iloc[0]
    if saturates_int8(isa):
        why = (f"this CPU's best int8 instructions are {isa}, without VNNI: u8 x s8 products are summed in pairs "
               f"into saturating 16-bit lanes, so int8 loses fidelity here that it keeps on CPUs with VNNI or AMX "
               f"(each row's saturation guard is in its quantize.json; docs/benchmarks/cpu_kinds.md)")
    else:
        why = (f"this CPU has {isa} int8 instructions, which do not saturate, so the loss is the quantization "
               f"itself (each row's per-layer sensitivity says where)")
    # How far each row is outside the budget, each limit's shortfall as a share of its room
    # (1 - min_cos of cosine, max_mAP_drop of mAP): the nearest is the most faithful.
    mAP_shortfall = (-max_mAP_drop - int8["mAP_delta"]) / max(max_mAP_drop, 1e-9) if math.isfinite(max_mAP_drop) \
        else -np.inf
    shortfall = np.maximum((min_cos - int8["cos_min"]) / max(1 - min_cos, 1e-9), mAP_shortfall)
    best = int8.loc[shortfall.idxmin()]
    return (f"No int8 row keeps the budget: {why}. The most faithful int8 row is " + _named(best, (
        f"cos_min {best['cos_min']:.4f}, mAP_delta {_delta(best['mAP_delta'], best['mAP_delta_lo'], best['mAP_delta_hi'])}, "
        f"{_against_fp32(best, f'latency_speedup_b{b}', f'fastest_fp32_b{b}')} at batch {b}, "
        f"{_against_fp32(best, 'speedup', 'fastest_fp32')} at batch {best['batch_size']} "
        f"({_verdict(best, min_cos, max_mAP_drop, min_rounds)})")) + ".")


def _least_memory(budget: pd.DataFrame) -> list[str]:
    """The row that adds the least resident memory, where memory was read."""
    measured = budget.dropna(subset=["mem_mb"])
    if measured.empty:
        return []
    least = measured.loc[measured["mem_mb"].idxmin()]
    return ["- Least memory: " + _named(least, (
        f"{least['mem_mb']:.0f} MB resident once loaded and warm at batch 1, cos_min {least['cos_min']:.4f}, "
        f"mAP_delta {_delta(least['mAP_delta'], least['mAP_delta_lo'], least['mAP_delta_hi'])}"))]


def _against_fp32(row, eager: str, named: str) -> str:
    """``2.10x the fastest fp32 (ov_fp32) [2.01, 2.20], 3.62x eager fp32``: the speed a deployer
    acts on first, then the seed's reference."""
    ours = f"{eager}_vs_fastest_fp32"
    return (f"{row[ours]:.2f}x the fastest fp32 ({row[named]}) [{row[f'{ours}_lo']:.2f}, {row[f'{ours}_hi']:.2f}], "
            f"{row[eager]:.2f}x eager fp32")


def what_to_ship(table: pd.DataFrame, min_cos: float = 0.995, max_mAP_drop: float = 1.0, min_rounds: int = 5) -> str:
    """Per device, among the rows within the fidelity budget: the fastest at the smallest
    latency batch, the fastest at the throughput batch, the smallest; then every row's
    deployment figures, the Pareto front of latency against mAP_delta marked."""
    batches = latency_batches(table)
    b = batches[0]
    mAP_limit = (f"mAP at most {max_mAP_drop:g} points below fp32's (`mAP_delta` >= {-max_mAP_drop:g}, its point "
                 f"estimate; the paired interval is beside it)") if math.isfinite(max_mAP_drop) else "no mAP limit"
    lines = [f"## What to ship\n\nBudget: worst cosine to fp32 `cos_min` >= {min_cos} and {mAP_limit}; speeds "
             f"timed in at least {min_rounds} rounds (`select.min_rounds`). Speeds are against the fastest fp32 "
             f"row of the device, the fp32 a deployer would ship instead, then against eager PyTorch fp32; each "
             f"row was timed side by side with eager fp32 in its own job, and its ratio to the fastest fp32 is "
             f"the quotient of the two rows' ratios [10th, 90th percentile of the quotients of their rounds].\n"]
    for device, rows_ in table.groupby("device", sort=False):
        lines.append(f"### {device}\n")
        int8 = rows_[rows_["precision"].str.startswith("int8")]
        if len(int8) and not int8["within_budget"].any():
            lines.append(int8_outside_budget(int8, b, min_cos, max_mAP_drop, min_rounds) + "\n")
        budget = rows_[rows_["within_budget"]]
        if budget.empty:
            lines.append("No row is within the budget.\n")
        else:
            fastest = budget.loc[budget[f"latency_speedup_b{b}_vs_fastest_fp32"].idxmax()]
            throughput = budget.loc[budget["speedup_vs_fastest_fp32"].idxmax()]
            smallest = budget.loc[budget["size_bytes"].idxmin()]
            lines.append("\n".join([
                f"- Fastest at batch {b}: " + _named(fastest, (
                    f"{fastest[f'latency_b{b}_ms']:.1f} ms per call (p90 {fastest[f'latency_b{b}_p90_ms']:.1f}), "
                    f"{_against_fp32(fastest, f'latency_speedup_b{b}', f'fastest_fp32_b{b}')}, cos_min "
                    f"{fastest['cos_min']:.4f}, mAP_delta "
                    f"{_delta(fastest['mAP_delta'], fastest['mAP_delta_lo'], fastest['mAP_delta_hi'])}")),
                f"- Fastest at batch {throughput['batch_size']} (throughput): " + _named(throughput, (
                    f"{throughput['model_img_per_s']:.1f} images/s, "
                    f"{_against_fp32(throughput, 'speedup', 'fastest_fp32')}, cos_min "
                    f"{throughput['cos_min']:.4f}, mAP_delta "
                    f"{_delta(throughput['mAP_delta'], throughput['mAP_delta_lo'], throughput['mAP_delta_hi'])}")),
                "- Smallest: " + _named(smallest, (
                    f"{smallest['size_mb']:.1f} MB ({smallest['size_ratio']:.2f}x fp32), cos_min "
                    f"{smallest['cos_min']:.4f}, mAP_delta "
                    f"{_delta(smallest['mAP_delta'], smallest['mAP_delta_lo'], smallest['mAP_delta_hi'])}")),
                *_least_memory(budget),
            ]) + "\n")
        shown = ["variant"] + [f"latency_b{x}_ms" for x in batches] + \
            [f"b{b} x fastest fp32 ({rows_[f'fastest_fp32_b{b}'].iloc[0]})", f"b{b} x eager fp32"] + \
            ["first_embedding_s", "mem_mb", "cos_min", "mAP_delta", "within budget", "Pareto"]
        lines.append("| " + " | ".join(shown) + " |\n|" + "---|" * len(shown))
        for _, row in rows_.sort_values(f"latency_b{b}_ms").iterrows():
            cells = [row["variant"]]
            cells += [f"{row[f'latency_b{x}_ms']:.1f} (p90 {row[f'latency_b{x}_p90_ms']:.1f})" for x in batches]
            cells += [_interval(row[f"latency_speedup_b{b}{against}"], row[f"latency_speedup_b{b}{against}_lo"],
                                row[f"latency_speedup_b{b}{against}_hi"], 2) for against in ("_vs_fastest_fp32", "")]
            cells += [f"{row['first_embedding_s']:.1f}", "" if pd.isna(row["mem_mb"]) else f"{row['mem_mb']:.0f}",
                      f"{row['cos_min']:.4f}", _delta(row["mAP_delta"], row["mAP_delta_lo"], row["mAP_delta_hi"]),
                      _verdict(row, min_cos, max_mAP_drop, min_rounds), "front" if row["pareto"] else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"latency_bN_ms: median milliseconds per call at batch N (p90 beside it), the runtime set up "
                 f"for latency; first_embedding_s: from loading the artifact to the first embedding of one "
                 f"image (load, compile, first call); mem_mb: resident memory the loaded variant adds, warm at batch "
                 f"1, read before and after with freed memory handed back to the system. Pareto "
                 f"front: no other row on the device is both faster at batch {b} and more accurate "
                 f"(mAP_delta).\n")
    return "\n".join(lines)


def layer_note(row: dict) -> str:
    """``23.4 dB, +0.00012 cos_mean in float``, with what was measured of the layer."""
    sqnr, gain = row.get("sqnr_db"), row.get("cos_mean_gain")
    notes = ([] if sqnr is None else [f"{sqnr:.1f} dB"]) + ([] if gain is None else [f"{gain:+.2g} cos_mean in float"])
    return ", ".join(notes)


def sensitivity_markdown(layers: dict[str, list[dict]], count: int = 5) -> str:
    if not layers:
        return ""
    lines = ["", "## Most sensitive layers", "",
             f"The {count} quantized layers of each int8 row that cost most on the val images (training identities, "
             "never calibrated on): PT2E's by the lowest SQNR against fp32, OpenVINO's by the val cos_mean that "
             "reverting the layer's quantizers alone to float gains; `results/{variant}/sensitivity.csv` has "
             "every layer:", ""]
    for variant, rows in layers.items():
        worst = most_sensitive(rows, count)
        lines.append(f"- **{variant}**: " + ", ".join(f"`{r['layer']}` ({layer_note(r)})" for r in worst))
    return "\n".join(lines) + "\n"


def budget_markdown(quantize_paths) -> str:
    """What each build with an ``accuracy_control`` budget reached on val, and what it left in float."""
    lines = []
    for path in dict.fromkeys(map(Path, quantize_paths)):
        info = read_json(path)
        control = info.get("accuracy_control")
        if not control:
            continue
        layers = info.get("float_layers", [])
        named = ", ".join(f"`{layer}`" for layer in layers[:8])
        if len(layers) > 8:
            named += f" and {len(layers) - 8} more"
        budget = "no limit" if control["max_drop"] is None else f"a budget of {control['max_drop']:g}"
        lines.append(f"- **{info['variant']}**: {control['metric']} drop {control['drop']:.4g} on val against "
                     f"{budget} ({'met' if control['met'] else 'NOT met'}), "
                     f"{len(layers)} layer(s) in float" + (f": {named}" if layers else ""))
    if not lines:
        return ""
    return "\n".join(["", "## Budgeted builds", "",
                      "Chosen on the val images alone (`quantize.json` has the details):", "", *lines]) + "\n"


def search_markdown(table: pd.DataFrame, not_run=()) -> str:
    """The search stage for people: per searched (variant, device), each index's cost in accuracy
    against exact search, its bytes per image and its query time."""
    first = table.iloc[0]
    lines = ["## The gallery: compressed and approximate search\n",
             f"dataset: {first['dataset']}, weights: {first['weights']}; {int(first['total_images']):,} images searched "
             f"per query ({int(first['distractors']):,} {first['distractor_source']} distractors), each index "
             f"returning {int(first['k'])}; FAISS {first['faiss']} on {first['cpu_model']} ({first['cpu_isa']}), "
             f"{int(first['threads'])} threads.\n"]
    for (variant, device), rows in table.groupby(["variant", "device"], sort=False):
        flat = rows[rows["index"] == "Flat"]
        everything = rows["exact_mAP_all_images"].iloc[0]
        truncation = [] if flat.empty else [
            f"Exact search ranking all {int(first['total_images']):,} images: mAP {everything * 100:.2f}; returning "
            f"{int(first['k'])} changes it by {(flat['mAP'].iloc[0] - everything) * 100:+.2f} points.\n"]
        lines += [f"### {variant} / {device}\n", *truncation,
                  "| index | bytes per image | mAP | mAP_delta [95% paired] | rank1_delta | recall@10 | 1-recall@10 | "
                  "1 query p50 (p90) ms | batch of "
                  f"{int(rows['batch_queries'].iloc[0])} p50 ms | build s | memory MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, row in rows.iterrows():
            lines.append(
                f"| {row['index']} | {row['bytes_per_image']:.0f} | {row['mAP'] * 100:.2f} | "
                f"{_delta(row['mAP_delta'], row['mAP_delta_lo'], row['mAP_delta_hi'])} | "
                f"{_delta(row['rank1_delta'], row['rank1_delta_lo'], row['rank1_delta_hi'])} | "
                f"{row['recall_at_10']:.3f} | {row['one_recall_at_10']:.3f} | {row['latency_1_p50_ms']:.2f} "
                f"({row['latency_1_p90_ms']:.2f}) | {row['latency_batch_p50_ms']:.2f} | {row['build_s']:.1f} | "
                f"{'' if pd.isna(row['memory_mb']) else format(row['memory_mb'], '.1f')} |")
        lines.append("")
    lines.append("mAP in %; mAP_delta and rank1_delta in points against exact search (Flat) on the same embeddings "
                 "returning as many images, [95% paired bootstrap interval over queries], starred where it excludes "
                 "zero. Images an index does not return rank after those it does, true matches last. recall@10: "
                 "the share of exact search's top 10 in the index's top 10; 1-recall@10: the share of queries whose "
                 "exact nearest neighbour is in the index's top 10. bytes per image: everything the index holds "
                 "(codes, ids, graph, centroids) over the images; memory MB: the resident memory building it added.\n")
    if not_run:
        lines += ["Not searched:", ""] + [f"- {variant} / {device}: {reason}" for variant, device, reason in not_run]
    return "\n".join(lines) + "\n"
