"""One comparison table: every (variant, device) row against fp32 on the same device.

Speedups come from each variant's own job, where it was timed in alternating rounds with
fp32; accuracy figures carry bootstrap intervals over queries, and differences to fp32 a
paired bootstrap on the same queries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reidquant.configcheck import REFERENCE
from reidquant.errors import ReidQuantError
from reidquant.jsonio import read_json, write_text
from reidquant.sensitivity import most_sensitive, write_csv
from reidquant.stats import LEVEL, bootstrap_interval

COLUMNS = ["dataset", "weights", "variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s",
           "extract_img_per_s", "speedup", "rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP",
           "mAP_delta", "cos_mean", "cos_min", "top1_agreement", "device_name", "threads", "torch"]
# Deployment columns, for each latency batch size b (``benchmark.latency_batches``) ...
LATENCY = ["latency_b{b}_ms", "latency_b{b}_p90_ms", "latency_speedup_b{b}", "latency_speedup_b{b}_lo",
           "latency_speedup_b{b}_hi"]
# ... then once per row.
DEPLOYMENT = ["first_embedding_s", "mem_mb"]
EXTRA = ["arch", "type", "speedup_lo", "speedup_hi", "rank1_lo", "rank1_hi", "mAP_lo", "mAP_hi", "mAP_delta_lo", "mAP_delta_hi",
         "rank1_delta", "rank1_delta_lo", "rank1_delta_hi", "top10_overlap", "compile_s", "quantize_s",
         "calibration_images", "float_layers", "num_query", "num_valid_query", "num_images", "height", "width", "size_bytes",
         "batch_size", "load_s", "cuda_mem_mb", "within_budget", "pareto"]
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


def rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
         select: dict | None = None) -> pd.DataFrame:
    """The table: one row per job, with the ``select`` budget (``min_cos``, ``max_mAP_drop``)
    marked in ``within_budget`` and the latency/accuracy Pareto front in ``pareto``."""
    records, per_query, batches = [], {}, set()
    for (variant, device), q_path, t_path, m_path in zip(jobs, quantize_paths, timing_paths, metrics_paths):
        q, t, m = read_json(q_path), read_json(t_path), read_json(m_path)
        check_provenance(q, q_path, "weights", weights)
        check_provenance(q, q_path, "dataset", dataset)
        check_provenance(t, t_path, "dataset", dataset)
        if "latency" not in t:
            raise ReidQuantError(f"{t_path}: no latency timings (written by an older reidquant); rerun that job")
        batches.add(tuple(sorted(map(int, t["latency"]))))
        per_query[(variant, device)] = ({k: np.asarray(v, dtype=np.float64) for k, v in m["per_query"].items()},
                                        m_path)
        reference = variant == REFERENCE
        records.append({
            "dataset": dataset, "weights": weights, "variant": variant, "device": device,
            "arch": q["arch"], "type": q["type"], "precision": t["precision"], "runtime": t["runtime"], "size_mb": q["size_bytes"] / 1e6, "size_bytes": q["size_bytes"],
            "model_img_per_s": t["model_img_per_s"], "extract_img_per_s": t["extract_img_per_s"],
            "batch_size": t["batch_size"],
            **{k: 1.0 if reference else t[k] for k in SPEEDUPS},
            **{k: m.get(k) for k in ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP", "cos_mean",
                                     "cos_min", "top1_agreement", "top10_overlap", "num_query",
                                     "num_valid_query")},
            "device_name": t["device_name"], "threads": t["threads"], "torch": t["torch"],
            **deployment(t, reference), "quantize_s": q.get("quantize_s"),
            "calibration_images": q.get("calibration_images"),
            "float_layers": len(q["float_layers"]) if "float_layers" in q else None, "num_images": t.get("num_images"),
            "height": q.get("height"), "width": q.get("width"),
        })
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
    table["within_budget"] = within_budget(table, **(select or {}))
    table["pareto"] = pareto_front(table)
    shapes = sorted(int(c[len("compile_b"):-2]) for c in table.columns if c.startswith("compile_b"))
    return table[columns(sorted(next(iter(batches))), shapes)]


def within_budget(table: pd.DataFrame, min_cos: float = 0.995, max_mAP_drop: float = 1.0) -> pd.Series:
    """Rows whose worst cosine to fp32 is at least ``min_cos`` and whose mAP is at most
    ``max_mAP_drop`` points below fp32's (judged on the point estimate ``mAP_delta``)."""
    return (table["cos_min"] >= min_cos) & (table["mAP_delta"] >= -max_mAP_drop)


def pareto_front(table: pd.DataFrame) -> pd.Series:
    """Rows that no other row on their device beats on both smallest-batch latency speedup and
    ``mAP_delta`` (at least as good on both, better on one)."""
    speed = f"latency_speedup_b{latency_batches(table)[0]}"
    front = pd.Series(True, index=table.index)
    for i, row in table.iterrows():
        rivals = table[(table["device"] == row["device"]) & (table.index != i)]
        dominated = ((rivals[speed] >= row[speed]) & (rivals["mAP_delta"] >= row["mAP_delta"])
                     & ((rivals[speed] > row[speed]) | (rivals["mAP_delta"] > row["mAP_delta"])))
        front[i] = not dominated.any()
    return front


def _interval(value, low, high, digits: int) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _delta(value, low, high) -> str:
    """A difference in points with its interval; starred when the interval excludes zero."""
    star = " *" if low > 0 or high < 0 else ""
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]{star}"


def markdown(table: pd.DataFrame, skipped=()) -> str:
    shown = ["variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s", "extract_img_per_s",
             "speedup", "rank1", "mAP", "rank1_delta", "mAP_delta", "cos_mean", "top1_agreement", "compile_s"]
    header = "| " + " | ".join(shown) + " |\n|" + "---|" * len(shown) + "\n"
    lines = []
    for _, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            if column == "speedup":
                cells.append(_interval(value, row["speedup_lo"], row["speedup_hi"], 2))
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
            f"{first['device_name']}, {first['threads']} threads\n\n")
    level = f"{LEVEL:.0%}"
    legend = (f"\nspeedup: median of per-round ratios to fp32 timed side by side in the same job "
              f"[10th, 90th percentile of the rounds]. rank1 and mAP in %, [{level} bootstrap interval over "
              f"queries]; rank1_delta and mAP_delta in points against fp32 on the same device, [{level} paired "
              f"bootstrap interval]; * marks a difference whose interval excludes zero.\n")
    skipped_queries = int(first["num_query"] - first["num_valid_query"])
    if skipped_queries:
        legend += (f"\n{skipped_queries} of {int(first['num_query'])} queries have no true match in the gallery "
                   f"and are left out of every metric (torchreid and fast-reid do the same; the reference "
                   f"project counts them as misses, so its mAP and Rank@k are ours x "
                   f"{int(first['num_valid_query'])}/{int(first['num_query'])}).\n")
    if skipped:
        legend += "\nNot run:\n\n" + "".join(f"- {variant} / {device}: {reason}\n"
                                           for variant, device, reason in skipped)
    return note + header + "\n".join(lines) + "\n" + legend


def _budget_miss(row, min_cos: float, max_mAP_drop: float) -> str:
    misses = []
    if row["cos_min"] < min_cos:
        misses.append(f"cos_min {row['cos_min']:.4f}")
    if row["mAP_delta"] < -max_mAP_drop:
        misses.append(f"mAP {row['mAP_delta']:+.2f}")
    return "no: " + ", ".join(misses) if misses else "yes"


def _named(row, what: str) -> str:
    return f"**{row['variant']}** ({row['precision']}, {row['runtime']}): {what}"


def what_to_ship(table: pd.DataFrame, min_cos: float = 0.995, max_mAP_drop: float = 1.0) -> str:
    """Per device, among the rows within the fidelity budget: the fastest at the smallest
    latency batch, the fastest at the throughput batch, the smallest; then every row's
    deployment figures, the Pareto front of latency against mAP_delta marked."""
    batches = latency_batches(table)
    b = batches[0]
    lines = [f"## What to ship\n\nBudget: worst cosine to fp32 `cos_min` >= {min_cos} and mAP at most "
             f"{max_mAP_drop} points below fp32's (`mAP_delta` >= {-max_mAP_drop:g}, its point estimate; the "
             f"paired interval is beside it). Speedups are timed side by side with fp32 in each row's own job.\n"]
    for device, rows_ in table.groupby("device", sort=False):
        lines.append(f"### {device}\n")
        budget = rows_[rows_["within_budget"]]
        if budget.empty:
            lines.append("No row is within the budget.\n")
        else:
            fastest = budget.loc[budget[f"latency_speedup_b{b}"].idxmax()]
            throughput = budget.loc[budget["speedup"].idxmax()]
            smallest = budget.loc[budget["size_bytes"].idxmin()]
            lines.append("\n".join([
                f"- Fastest at batch {b}: " + _named(fastest, (
                    f"{fastest[f'latency_b{b}_ms']:.1f} ms per call (p90 {fastest[f'latency_b{b}_p90_ms']:.1f}), "
                    f"{fastest[f'latency_speedup_b{b}']:.2f}x fp32 [{fastest[f'latency_speedup_b{b}_lo']:.2f}, "
                    f"{fastest[f'latency_speedup_b{b}_hi']:.2f}], cos_min {fastest['cos_min']:.4f}, mAP_delta "
                    f"{_delta(fastest['mAP_delta'], fastest['mAP_delta_lo'], fastest['mAP_delta_hi'])}")),
                f"- Fastest at batch {throughput['batch_size']} (throughput): " + _named(throughput, (
                    f"{throughput['model_img_per_s']:.1f} images/s, {throughput['speedup']:.2f}x fp32 "
                    f"[{throughput['speedup_lo']:.2f}, {throughput['speedup_hi']:.2f}], cos_min "
                    f"{throughput['cos_min']:.4f}, mAP_delta "
                    f"{_delta(throughput['mAP_delta'], throughput['mAP_delta_lo'], throughput['mAP_delta_hi'])}")),
                "- Smallest: " + _named(smallest, (
                    f"{smallest['size_mb']:.1f} MB ({smallest['size_ratio']:.2f}x fp32), cos_min "
                    f"{smallest['cos_min']:.4f}, mAP_delta "
                    f"{_delta(smallest['mAP_delta'], smallest['mAP_delta_lo'], smallest['mAP_delta_hi'])}")),
            ]) + "\n")
        shown = ["variant"] + [f"latency_b{x}_ms" for x in batches] + [f"latency_speedup_b{b}"] + \
            ["first_embedding_s", "mem_mb", "cos_min", "mAP_delta", "within budget", "Pareto"]
        lines.append("| " + " | ".join(shown) + " |\n|" + "---|" * len(shown))
        for _, row in rows_.sort_values(f"latency_b{b}_ms").iterrows():
            cells = [row["variant"]]
            cells += [f"{row[f'latency_b{x}_ms']:.1f} (p90 {row[f'latency_b{x}_p90_ms']:.1f})" for x in batches]
            cells.append(_interval(row[f"latency_speedup_b{b}"], row[f"latency_speedup_b{b}_lo"],
                                   row[f"latency_speedup_b{b}_hi"], 2))
            cells += [f"{row['first_embedding_s']:.1f}", "" if pd.isna(row["mem_mb"]) else f"{row['mem_mb']:.0f}",
                      f"{row['cos_min']:.4f}", _delta(row["mAP_delta"], row["mAP_delta_lo"], row["mAP_delta_hi"]),
                      _budget_miss(row, min_cos, max_mAP_drop), "front" if row["pareto"] else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"latency_bN_ms: median milliseconds per call at batch N (p90 beside it), the runtime set up "
                 f"for latency; first_embedding_s: from loading the artifact to the first embedding of one "
                 f"image (load, compile, first call); mem_mb: resident memory the loaded variant adds. Pareto "
                 f"front: no other row on the device is both faster at batch {b} and more accurate "
                 f"(mAP_delta).\n")
    return "\n".join(lines)


def summarize(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
              csv_path: Path, md_path: Path, skipped=(), select: dict | None = None,
              extra_markdown: str = "") -> pd.DataFrame:
    table = rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset, weights, select)
    write_text(Path(csv_path), table.to_csv(index=False, float_format="%.6g"))
    text = markdown(table, skipped) + "\n" + what_to_ship(table, **(select or {})) + extra_markdown
    write_text(Path(md_path), text)
    print(text)
    return table


def layer_sensitivity(variants, quantize_paths) -> dict[str, list[dict]]:
    """The per-layer SQNR each of ``variants`` recorded in its ``quantize.json`` when built."""
    found = {}
    for variant in variants:
        path = next(Path(p) for p in quantize_paths if Path(p).parent.name == variant)
        info = read_json(path)
        if "sensitivity" not in info:
            raise ReidQuantError(f"{path}: no per-layer sensitivity recorded (rebuild variant {variant})")
        found[variant] = info["sensitivity"]
    return found


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
        lines.append(f"- **{info['variant']}**: {control['metric']} drop {control['drop']:.4g} on val against a "
                     f"budget of {control['max_drop']:g} ({'met' if control['met'] else 'NOT met'}), "
                     f"{len(layers)} layer(s) in float" + (f": {named}" if layers else ""))
    if not lines:
        return ""
    return "\n".join(["", "## Budgeted builds", "",
                      "Chosen on the val images alone (`quantize.json` has the details):", "", *lines]) + "\n"


def report(jobs, skipped, quantize, timing, metrics, dataset: str, weights: str, outputs,
           select: dict | None = None, sensitivity_variants=()) -> pd.DataFrame:
    """The summary table (csv and markdown) and its plots, at the paths in ``outputs``
    (``csv``, ``markdown``, ``accuracy``, ``size``, ``fidelity``, ``latency``, ``sensitivity_plot``
    and ``sensitivity``, one csv per variant of ``sensitivity_variants``, in that order)."""
    from reidquant import plots

    layers = layer_sensitivity(sensitivity_variants, quantize)
    table = summarize(jobs, quantize, timing, metrics, dataset, weights, Path(outputs.csv), Path(outputs.markdown),
                      skipped=skipped, select=select,
                      extra_markdown=sensitivity_markdown(layers) + budget_markdown(quantize))
    plots.plot_summary(table, outputs, **(select or {}))
    for (variant, rows), path in zip(layers.items(), outputs.sensitivity):
        write_csv(rows, Path(path))
    plots.sensitivity(layers, Path(outputs.sensitivity_plot))
    return table
