"""The summary job: the table (``reidquant.table``) written as csv and markdown
(``reidquant.markdown``) with its plots; and the sensitivity report, the per-layer analysis
of the int8 rows (``reidquant.sensitivity``), a target of its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidquant import plots
from reidquant.errors import ReidQuantError
from reidquant.jsonio import read_json, write_text
from reidquant.markdown import budget_markdown, markdown, search_markdown, sensitivity_markdown, what_to_ship
from reidquant.sensitivity import read_csv
from reidquant.table import not_run, rows

# The analysis summary.md points to; it is made by its own target.
SENSITIVITY_REPORT = Path("results/sensitivity.md")


def summarize(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
              csv_path: Path, md_path: Path, skipped=(), select: dict | None = None,
              extra_markdown: str = "", specs: dict | None = None, models=None) -> pd.DataFrame:
    table = rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset, weights, select, specs, models)
    write_text(Path(csv_path), table.to_csv(index=False, float_format="%.6g"))
    skipped = [*skipped, *not_run(jobs, timing_paths)]
    text = markdown(table, skipped) + "\n" + what_to_ship(table, **(select or {})) + extra_markdown
    write_text(Path(md_path), text)
    print(text)
    return table


def sensitivity_pointer(table: pd.DataFrame, report: Path = SENSITIVITY_REPORT) -> str:
    """Where the int8 rows' per-layer sensitivity is, or how to get it."""
    if not table["precision"].str.startswith("int8").any():
        return ""
    if report.is_file():
        return f"\nWhich layers cost each int8 row its fidelity: [{report}]({report.name}).\n"
    return (f"\nWhich layers cost each int8 row its fidelity is an analysis of its own: "
            f"`snakemake --cores 4 {report}`.\n")


def report(jobs, skipped, quantize, timing, metrics, dataset: str, weights: str, outputs,
           select: dict | None = None, specs: dict | None = None, models=None) -> pd.DataFrame:
    """The summary table (csv and markdown) and its plots, at the paths in ``outputs``
    (``csv``, ``markdown``, ``accuracy``, ``size``, ``fidelity``, ``latency``); each row checked
    against its variant's spec in ``specs`` and its artifact in ``models`` (``table.rows``)."""
    table = summarize(jobs, quantize, timing, metrics, dataset, weights, Path(outputs.csv), Path(outputs.markdown),
                      skipped=skipped, select=select, extra_markdown=budget_markdown(quantize), specs=specs,
                      models=models)
    pointer = sensitivity_pointer(table)
    if pointer:
        write_text(Path(outputs.markdown), Path(outputs.markdown).read_text() + pointer)
    plots.plot_summary(table, outputs, **(select or {}))
    return table


def sensitivity_report(variants, csv_paths, markdown: Path, plot: Path) -> dict[str, list[dict]]:
    """``results/sensitivity.md`` and its plot from each variant's ``sensitivity.csv``."""
    layers = {variant: read_csv(path) for variant, path in zip(variants, csv_paths)}
    text = sensitivity_markdown(layers) or "No int8 variant of a type that measures its layers ran.\n"
    write_text(Path(markdown), text.lstrip("\n"))
    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    plots.sensitivity(layers, Path(plot))
    return layers


SEARCH_COLUMNS = ["dataset", "weights", "variant", "device", "index", "distractor_source", "distractors",
                  "total_images", "bytes_per_image", "code_bytes", "mAP", "mAP_delta", "mAP_delta_lo", "mAP_delta_hi",
                  "rank1", "rank1_delta", "rank1_delta_lo", "rank1_delta_hi", "recall_at_10", "one_recall_at_10",
                  "build_s", "memory_mb", "latency_1_p50_ms", "latency_1_p90_ms", "latency_batch_p50_ms",
                  "latency_batch_p90_ms", "batch_queries", "k", "exact_mAP_all_images", "search_parameters", "threads",
                  "cpu_model", "cpu_isa", "faiss"]


def search_table(jobs, search_paths, dataset: str, weights: str) -> pd.DataFrame:
    """One row per (variant, device, index) of the search stage."""
    records = []
    for (variant, device), path in zip(jobs, search_paths):
        found = read_json(path)
        for row in found.get("indexes", ()):  # none where the node could not run the variant
            latency = row["latency"][str(found["total_images"])]
            records.append({
                "dataset": dataset, "weights": weights, "variant": variant, "device": device, "index": row["index"],
                "distractor_source": found["distractor_source"], "distractors": found["distractors"],
                "total_images": found["total_images"], "k": found["k"], "threads": found["threads"],
                "exact_mAP_all_images": found["exact"]["mAP_all_images"],
                "cpu_model": found["cpu_model"], "cpu_isa": found["cpu_isa"], "faiss": found["faiss"],
                "search_parameters": " ".join(f"{k}={v}" for k, v in row["parameters"].items()),
                "latency_1_p50_ms": latency["1"]["p50_ms"], "latency_1_p90_ms": latency["1"]["p90_ms"],
                "latency_batch_p50_ms": latency["batch"]["p50_ms"], "latency_batch_p90_ms": latency["batch"]["p90_ms"],
                "batch_queries": latency["batch"]["queries"],
                **{key: row[key] for key in SEARCH_COLUMNS if key in row}})
    if not records:
        raise ReidQuantError("the search stage searched no gallery (search.variants ran on no device)")
    return pd.DataFrame.from_records(records)[SEARCH_COLUMNS]


def search_report(jobs, search_paths, record_paths, outputs, dataset: str, weights: str) -> pd.DataFrame:
    """``results/search/summary.csv`` and ``.md`` and their plots."""
    table = search_table(jobs, search_paths, dataset, weights)
    write_text(Path(outputs.csv), table.to_csv(index=False, float_format="%.6g"))
    text = search_markdown(table, not_run(jobs, search_paths))
    write_text(Path(outputs.markdown), text)
    print(text)
    sizes = {(variant, device): found for (variant, device), found in
             ((job, read_json(path)) for job, path in zip(jobs, search_paths)) if "indexes" in found}
    plots.search_accuracy(table, Path(outputs.accuracy))
    plots.search_latency(sizes, Path(outputs.latency))
    return table
