"""One comparison table: every (variant, device) row against fp32 on the same device."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidquant.jsonio import read_json, write_text

COLUMNS = ["dataset", "weights", "variant", "device", "precision", "size_mb", "size_ratio", "model_img_per_s",
           "extract_img_per_s", "speedup", "rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP",
           "mAP_delta", "cos_mean", "cos_min", "top1_agreement", "device_name", "threads", "torch"]
EXTRA = ["top10_overlap", "compile_s", "quantize_s", "calibration_images", "num_query", "num_valid_query",
         "num_images", "height", "width", "size_bytes"]


def rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str) -> pd.DataFrame:
    records = []
    for (variant, device), q_path, t_path, m_path in zip(jobs, quantize_paths, timing_paths, metrics_paths):
        q, t, m = read_json(q_path), read_json(t_path), read_json(m_path)
        records.append({
            "dataset": dataset, "weights": weights, "variant": variant, "device": device,
            "precision": t["precision"], "size_mb": q["size_bytes"] / 1e6, "size_bytes": q["size_bytes"],
            "model_img_per_s": t["model_img_per_s"], "extract_img_per_s": t["extract_img_per_s"],
            **{k: m.get(k) for k in ("rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP", "cos_mean",
                                     "cos_min", "top1_agreement", "top10_overlap", "num_query",
                                     "num_valid_query")},
            "device_name": t["device_name"], "threads": t["threads"], "torch": t["torch"],
            "compile_s": t.get("compile_s"), "quantize_s": q.get("quantize_s"),
            "calibration_images": q.get("calibration_images"), "num_images": t.get("num_images"),
            "height": q.get("height"), "width": q.get("width"),
        })
    table = pd.DataFrame.from_records(records)
    fp32 = table[table["variant"] == "fp32"].set_index("device")
    base = fp32.reindex(table["device"])
    table["size_ratio"] = table["size_bytes"].to_numpy() / base["size_bytes"].to_numpy()
    table["speedup"] = table["model_img_per_s"].to_numpy() / base["model_img_per_s"].to_numpy()
    table["mAP_delta"] = (table["mAP"].to_numpy() - base["mAP"].to_numpy()) * 100
    fp32_rows = table["variant"] == "fp32"
    table.loc[fp32_rows, ["cos_mean", "cos_min", "top1_agreement"]] = [1.0, 1.0, 1.0]
    table.loc[fp32_rows, "top10_overlap"] = 1.0
    return table[COLUMNS + EXTRA]


def markdown(table: pd.DataFrame) -> str:
    shown = ["variant", "device", "precision", "size_mb", "size_ratio", "model_img_per_s", "extract_img_per_s",
             "speedup", "rank1", "mAP", "mAP_delta", "cos_mean", "top1_agreement", "compile_s"]
    header = "| " + " | ".join(shown) + " |\n|" + "---|" * len(shown) + "\n"
    lines = []
    for _, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            if isinstance(value, float):
                digits = 4 if column in ("cos_mean",) else 1 if column.endswith(("_per_s", "_s", "mb")) else 3
                cells.append(f"{value:.{digits}f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    first = table.iloc[0]
    note = (f"dataset: {first['dataset']}, weights: {first['weights']}, torch {first['torch']}, "
            f"{first['device_name']}, {first['threads']} threads\n\n")
    return note + header + "\n".join(lines) + "\n"


def summarize(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
              csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset, weights)
    write_text(Path(csv_path), table.to_csv(index=False, float_format="%.6g"))
    text = markdown(table)
    write_text(Path(md_path), text)
    print(text)
    return table
