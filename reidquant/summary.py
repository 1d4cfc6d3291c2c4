"""The summary job: the table (``reidquant.table``) written as csv and markdown
(``reidquant.markdown``), its plots, and each int8 row's per-layer sensitivity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidquant import plots
from reidquant.errors import ReidQuantError
from reidquant.jsonio import read_json, write_text
from reidquant.markdown import budget_markdown, markdown, sensitivity_markdown, what_to_ship
from reidquant.sensitivity import write_csv
from reidquant.table import rows

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


def report(jobs, skipped, quantize, timing, metrics, dataset: str, weights: str, outputs,
           select: dict | None = None, sensitivity_variants=()) -> pd.DataFrame:
    """The summary table (csv and markdown) and its plots, at the paths in ``outputs``
    (``csv``, ``markdown``, ``accuracy``, ``size``, ``fidelity``, ``latency``, ``sensitivity_plot``
    and ``sensitivity``, one csv per variant of ``sensitivity_variants``, in that order)."""
    layers = layer_sensitivity(sensitivity_variants, quantize)
    table = summarize(jobs, quantize, timing, metrics, dataset, weights, Path(outputs.csv), Path(outputs.markdown),
                      skipped=skipped, select=select,
                      extra_markdown=sensitivity_markdown(layers) + budget_markdown(quantize))
    plots.plot_summary(table, outputs, **(select or {}))
    for layer_rows, path in zip(layers.values(), outputs.sensitivity):
        write_csv(layer_rows, Path(path))
    plots.sensitivity(layers, Path(outputs.sensitivity_plot))
    return table
