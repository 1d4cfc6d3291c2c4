"""The summary job: the table (``reidquant.table``) written as csv and markdown
(``reidquant.markdown``) with its plots; and the sensitivity report, the per-layer analysis
of the int8 rows (``reidquant.sensitivity``), a target of its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidquant import plots
from reidquant.jsonio import write_text
from reidquant.markdown import budget_markdown, markdown, sensitivity_markdown, what_to_ship
from reidquant.sensitivity import read_csv
from reidquant.table import not_run, rows

# The analysis summary.md points to; it is made by its own target.
SENSITIVITY_REPORT = Path("results/sensitivity.md")


def summarize(jobs, quantize_paths, timing_paths, metrics_paths, dataset: str, weights: str,
              csv_path: Path, md_path: Path, skipped=(), select: dict | None = None,
              extra_markdown: str = "") -> pd.DataFrame:
    table = rows(jobs, quantize_paths, timing_paths, metrics_paths, dataset, weights, select)
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
           select: dict | None = None) -> pd.DataFrame:
    """The summary table (csv and markdown) and its plots, at the paths in ``outputs``
    (``csv``, ``markdown``, ``accuracy``, ``size``, ``fidelity``, ``latency``)."""
    table = summarize(jobs, quantize, timing, metrics, dataset, weights, Path(outputs.csv), Path(outputs.markdown),
                      skipped=skipped, select=select, extra_markdown=budget_markdown(quantize))
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
