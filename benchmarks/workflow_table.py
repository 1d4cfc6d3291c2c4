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

from reidquant.jsonio import write_text
from reidquant.devices import cpu_model
from reidquant.variants import describe

COLUMNS = ["variant", "device", "precision", "runtime", "size_mb", "size_ratio", "model_img_per_s", "extract_img_per_s",
           "speedup", "speedup_lo", "speedup_hi", "rank1", "mAP", "mAP_lo", "mAP_hi", "mAP_delta", "mAP_delta_lo",
           "mAP_delta_hi", "cos_mean", "cos_min", "top1_agreement", "compile_s"]


def sentence(row) -> str:
    text = (f"**{row.variant} / {row.device}** — {describe(row.type)} ({row.precision}, {row.runtime}): "
            f"{row.model_img_per_s:.1f} images/s model-only ({row.speedup:.2f}× fp32 timed side by side, "
            f"{row.speedup_lo:.2f}–{row.speedup_hi:.2f} over the rounds), "
            f"{row.size_mb:.1f} MB ({row.size_ratio:.2f}× fp32), mAP {row.mAP * 100:.2f} "
            f"[{row.mAP_lo * 100:.2f}, {row.mAP_hi * 100:.2f}], {row.mAP_delta:+.2f} points against fp32 "
            f"[{row.mAP_delta_lo:+.2f}, {row.mAP_delta_hi:+.2f}], features at cosine {row.cos_mean:.4f} "
            f"(worst {row.cos_min:.4f}) "
            f"to fp32 with {row.top1_agreement * 100:.1f}% of top-1 matches unchanged")
    if row.compile_s and row.compile_s > 0:
        text += f"; compiling took {row.compile_s:.0f} s, once, outside the timing"
    return text + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summary", type=Path, default=Path("results/summary.csv"))
    parser.add_argument("--train", type=Path, default=None, help="train.json of the run, if it trained")
    parser.add_argument("--elapsed", help="wall time of the whole run, as measured")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/workflow.md"))
    parser.add_argument("--command", default="snakemake --cores 4 results/summary.csv",
                        help="the command that made the run, as typed")
    args = parser.parse_args()
    table = pd.read_csv(args.summary)
    first = table.iloc[0]
    lines = [
        f"Run of `{args.command}` (the default configuration, with any `--config` shown): dataset "
        f"`{first['dataset']}`, weights `{first['weights']}`, arch `{first['arch']}`, input {first['height']}×{first['width']}, "
        f"torch {first['torch']}, {cpu_model()} ({os.cpu_count()} cores, {first['threads']} threads), "
        f"Python {platform.python_version()}."
    ]
    if args.elapsed:
        lines[0] += f" The whole run took {args.elapsed}."
    if args.train and args.train.exists():
        train = json.loads(args.train.read_text())
        lines.append(f"Training ({train['hyperparameters']['recipe']} recipe): {train['epochs']} epochs on "
                     f"{train['images']} images of {train['identities']} identities in {train['train_s']:.0f} s, "
                     f"final training accuracy {train['history'][-1]['acc']:.3f}.")
    shown = table[COLUMNS]
    lines.append("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for row in shown.itertuples(index=False):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines[-1] += "\n| " + " | ".join(cells) + " |"
    lines.extend(sentence(row) for row in table.itertuples(index=False))
    write_text(args.out, "\n\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
