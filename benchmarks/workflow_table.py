"""Turn a finished run's results/summary.csv into docs/benchmarks/workflow.md.

    snakemake --cores 4 results/summary.csv && python benchmarks/workflow_table.py

The table is copied from the CSV as the workflow wrote it; each row gets a sentence built
from its own numbers, so nothing in the document is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd

from reidquant.configcheck import checked, schema_part
from reidquant.jsonio import write_text
from reidquant.markdown import budget_markdown, sensitivity_markdown, what_to_ship
from reidquant.table import latency_batches
from reidquant.variants import describe

COLUMNS = ["variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s", "extract_img_per_s",
           "speedup_vs_fastest_fp32", "fastest_fp32", "speedup", "speedup_lo", "speedup_hi", "rank1", "mAP", "mAP_lo", "mAP_hi", "mAP_delta", "mAP_delta_lo",
           "mAP_delta_hi", "cos_mean", "cos_min", "top1_agreement", "compile_s", "float_layers"]
LATENCY_SHOWN = ["latency_b{b}_ms", "latency_b{b}_p90_ms", "latency_speedup_b{b}_vs_fastest_fp32", "latency_speedup_b{b}"]


def sentence(row) -> str:
    text = (f"**{row.variant} / {row.device}** — {describe(row.type)} ({row.precision}, {row.runtime}): "
            f"{row.model_img_per_s:.1f} images/s model-only ({row.speedup_vs_fastest_fp32:.2f}× the fastest fp32, "
            f"{row.fastest_fp32}, {row.speedup_vs_fastest_fp32_lo:.2f}–{row.speedup_vs_fastest_fp32_hi:.2f}; "
            f"{row.speedup:.2f}× eager fp32 timed side by side, {row.speedup_lo:.2f}–{row.speedup_hi:.2f} over the "
            f"rounds), "
            f"{row.size_mb:.1f} MB ({row.size_ratio:.2f}× fp32), mAP {row.mAP * 100:.2f} "
            f"[{row.mAP_lo * 100:.2f}, {row.mAP_hi * 100:.2f}], {row.mAP_delta:+.2f} points against fp32 "
            f"[{row.mAP_delta_lo:+.2f}, {row.mAP_delta_hi:+.2f}], features at cosine {row.cos_mean:.4f} "
            f"(worst {row.cos_min:.4f}) "
            f"to fp32 with {row.top1_agreement * 100:.1f}% of top-1 matches unchanged")
    batches = latency_batches(pd.DataFrame(columns=row._fields))
    latency = ", ".join(f"{getattr(row, f'latency_b{b}_ms'):.1f} ms per call at batch {b} "
                        f"({getattr(row, f'latency_speedup_b{b}_vs_fastest_fp32'):.2f}× the fastest fp32, "
                        f"{getattr(row, f'latency_speedup_b{b}'):.2f}× eager fp32)" for b in batches)
    text += (f"; {latency}; first embedding {row.first_embedding_s:.1f} s after loading began, "
             f"{row.mem_mb:.0f} MB resident")
    if row.compile_s and row.compile_s > 0:
        shapes = ", ".join(f"{getattr(row, c):.0f} s at batch {c[len('compile_b'):-2]}"
                           for c in row._fields if c.startswith("compile_b") and getattr(row, c) >= 0.5)
        text += f"; compiling took {row.compile_s:.0f} s" + (f" ({shapes})" if shapes else "") + \
            ", once per shape, outside the timing"
    return text + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summary", type=Path, default=Path("results/summary.csv"))
    parser.add_argument("--train", type=Path, default=None, help="train.json of the run, if it trained")
    parser.add_argument("--elapsed", help="wall time of the whole run, as measured")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/workflow.md"))
    parser.add_argument("--command", default="snakemake --cores 4 results/summary.csv",
                        help="the command that made the run, as typed")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="the run's results folder: each int8 row's sensitivity.csv is read there")
    parser.add_argument("--select", default="{}",
                        help="the run's select budget as JSON, if not the default (what within_budget used)")
    args = parser.parse_args()
    select = checked(json.loads(args.select), schema_part("select"), "--select")
    table = pd.read_csv(args.summary)
    first = table.iloc[0]
    lines = [
        f"Run of `{args.command}` (the default configuration, with any `--config` shown): dataset "
        f"`{first['dataset']}`, weights `{first['weights']}`, arch `{first['arch']}`, input {first['height']}×{first['width']}, "
        f"torch {first['torch']}, {first['cpu_model']} (int8 instructions: {first['cpu_isa']}; "
        f"{os.cpu_count()} cores, {first['threads']} threads), "
        f"Python {platform.python_version()}."
    ]
    if args.elapsed:
        lines[0] += f" The whole run took {args.elapsed}."
    if args.train and args.train.exists():
        train = json.loads(args.train.read_text())
        lines.append(f"Training ({train['hyperparameters']['recipe']} recipe): {train['epochs']} epochs on "
                     f"{train['images']} images of {train['identities']} identities in {train['train_s']:.0f} s, "
                     f"final training accuracy {train['history'][-1]['acc']:.3f}.")
    shown = table[COLUMNS + [name.format(b=b) for b in latency_batches(table) for name in LATENCY_SHOWN]
                  + ["first_embedding_s", "mem_mb"]]
    lines.append("| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns))
    for row in shown.itertuples(index=False):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines[-1] += "\n| " + " | ".join(cells) + " |"
    lines.extend(sentence(row) for row in table.itertuples(index=False))
    lines.append(what_to_ship(table, **select).replace("## What to ship", "### What to ship", 1).replace("\n### ", "\n#### "))
    layers = {}
    for path in sorted(args.results.glob("*/sensitivity.csv")):
        rows = pd.read_csv(path)  # a blank cell (not measured) is None, as in quantize.json
        layers[path.parent.name] = rows.astype(object).where(rows.notna(), None).to_dict("records")
    if layers:
        lines.append(sensitivity_markdown(layers).strip().replace("## Most sensitive layers", "### Most sensitive layers", 1))
    budgets = budget_markdown(sorted(args.results.glob("*/quantize.json")))
    if budgets:
        lines.append(budgets.strip().replace("## Budgeted builds", "### Budgeted builds", 1))
    write_text(args.out, "\n\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
