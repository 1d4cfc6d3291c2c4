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
from reidquant.stats import LEVEL, bootstrap_interval

COLUMNS = ["dataset", "weights", "variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s",
           "extract_img_per_s", "speedup", "rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP",
           "mAP_delta", "cos_mean", "cos_min", "top1_agreement", "device_name", "threads", "torch"]
EXTRA = ["arch", "type", "speedup_lo", "speedup_hi", "rank1_lo", "rank1_hi", "mAP_lo", "mAP_hi", "mAP_delta_lo", "mAP_delta_hi",
         "rank1_delta", "rank1_delta_lo", "rank1_delta_hi", "top10_overlap", "compile_s", "quantize_s",
         "calibration_images", "num_query", "num_valid_query", "num_images", "height", "width", "size_bytes"]


def check_provenance(record: dict, path, key: str, expected: str) -> None:
    """A row is labelled with this run's ``dataset`` and ``weights`` only if its job recorded
    having been made from them: numbers never appear under a label they did not come from."""
    made_from = record.get(key)
    if made_from != expected:
        raise ReidQuantError(f"{path}: made from {key} {made_from!r}, but this run's {key} is {expected!r}; "
                             f"its row would be mislabelled (rerun that job, e.g. with --forcerun)")


def rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str) -> pd.DataFrame:
    records, per_query = [], {}
    for (variant, device), q_path, t_path, m_path in zip(jobs, quantize_paths, timing_paths, metrics_paths):
        q, t, m = read_json(q_path), read_json(t_path), read_json(m_path)
        check_provenance(q, q_path, "weights", weights)
        check_provenance(q, q_path, "dataset", dataset)
        check_provenance(t, t_path, "dataset", dataset)
        per_query[(variant, device)] = ({k: np.asarray(v, dtype=np.float64) for k, v in m["per_query"].items()},
                                        m_path)
        reference = variant == REFERENCE
        records.append({
            "dataset": dataset, "weights": weights, "variant": variant, "device": device,
            "arch": q["arch"], "type": q["type"], "precision": t["precision"], "runtime": t["runtime"], "size_mb": q["size_bytes"] / 1e6, "size_bytes": q["size_bytes"],
            "model_img_per_s": t["model_img_per_s"], "extract_img_per_s": t["extract_img_per_s"],
            **{k: 1.0 if reference else t[k] for k in ("speedup", "speedup_lo", "speedup_hi")},
            **{k: m.get(k) for k in ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP", "cos_mean",
                                     "cos_min", "top1_agreement", "top10_overlap", "num_query",
                                     "num_valid_query")},
            "device_name": t["device_name"], "threads": t["threads"], "torch": t["torch"],
            "compile_s": t.get("compile_s"), "quantize_s": q.get("quantize_s"),
            "calibration_images": q.get("calibration_images"), "num_images": t.get("num_images"),
            "height": q.get("height"), "width": q.get("width"),
        })
    table = pd.DataFrame.from_records(records)
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
    return table[COLUMNS + EXTRA]


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


def summarize(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
              csv_path: Path, md_path: Path, skipped=()) -> pd.DataFrame:
    table = rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset, weights)
    write_text(Path(csv_path), table.to_csv(index=False, float_format="%.6g"))
    text = markdown(table, skipped)
    write_text(Path(md_path), text)
    print(text)
    return table


def report(jobs, skipped, quantize, timing, metrics, dataset: str, weights: str, outputs) -> pd.DataFrame:
    """The summary table (csv and markdown) and its plots, at the paths in ``outputs``
    (``csv``, ``markdown``, ``accuracy``, ``size``, ``fidelity``)."""
    from reidquant.plots import plot_summary

    table = summarize(jobs, quantize, timing, metrics, dataset, weights, Path(outputs.csv), Path(outputs.markdown),
                      skipped=skipped)
    plot_summary(table, outputs)
    return table
