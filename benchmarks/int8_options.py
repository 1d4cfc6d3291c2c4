"""Which settings an int8 variant uses by default, and the measurements that chose them.

    snakemake --cores 4 results/summary.csv --configfile benchmarks/ov_int8_options.yaml
    python benchmarks/int8_options.py --options benchmarks/ov_int8_options.yaml --choose \
        --out docs/benchmarks/ov_int8_options.md

(the same with ``pt2e_options``, for the ``int8`` row). Reads the run's summary.csv and the
configuration it ran (the default config with the options file merged in), and lists every
int8 row of the options file's variant type: the default config's row of that type and the
options file's rows, each with the options that differ from the default row's, its speedup
over fp32 (timed side by side in its own job), its fidelity and accuracy against fp32, and
how long it took to build. With ``--choose``, the row the choice rule picks: the fastest
whose worst cosine to fp32 is at least 0.995 (how ``ov_int8``'s defaults were chosen).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from reidquant.jsonio import write_text
from reidquant.variants import complete

MIN_COSINE = 0.995


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summary", type=Path, default=Path("results/summary.csv"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--options", type=Path, required=True,
                        help="the variants file the run merged in (benchmarks/*_options.yaml)")
    parser.add_argument("--choose", action="store_true",
                        help=f"mark the fastest row with cos_min >= {MIN_COSINE}")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configured = yaml.safe_load(args.config.read_text())["variants"]
    extra = yaml.safe_load(args.options.read_text())["variants"]
    (kind,) = {spec["type"] for spec in extra.values()}
    table = pd.read_csv(args.summary)
    int8 = table[(table["type"] == kind) & table["precision"].str.startswith("int8")]
    (default,) = [name for name in configured if name in set(int8["variant"])]
    variants = {default: configured[default], **extra}
    defaults = complete(variants[default])
    rows = int8[int8["variant"].isin(variants)].copy()
    rows["options"] = [", ".join(f"{key}: {value}" for key, value in complete(variants[name]).items()
                                 if value != defaults.get(key)) or "none (the default row)"
                       for name in rows["variant"]]
    eligible = rows[rows["cos_min"] >= MIN_COSINE]
    chosen = eligible.loc[eligible["speedup"].idxmax(), "variant"] if args.choose and len(eligible) else None
    default_precision = rows.loc[rows["variant"] == default, "precision"].iloc[0]
    lines = [f"`{kind}` int8 rows of one run ({rows['device_name'].iloc[0]}, {rows['threads'].iloc[0]} threads, "
             f"{rows['runtime'].iloc[0]}, `{default}` in {default_precision}), each timed side by side with fp32 "
             f"in its own job. `{default}`, the default config's row: "
             + ", ".join(f"{key}: {value}" for key, value in defaults.items() if key != "type") + ".\n",
             "| variant | options changed | speedup [10th, 90th pct] | cos_min | cos_mean | "
             "top1_agreement | mAP_delta [95% paired] | build s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows.sort_values("speedup", ascending=False).itertuples():
        mark = " (chosen)" if row.variant == chosen else ""
        lines.append(f"| {row.variant}{mark} | {row.options} | {row.speedup:.2f} "
                     f"[{row.speedup_lo:.2f}, {row.speedup_hi:.2f}] | {row.cos_min:.4f} | {row.cos_mean:.5f} | "
                     f"{row.top1_agreement:.3f} | {row.mAP_delta:+.2f} [{row.mAP_delta_lo:+.2f}, "
                     f"{row.mAP_delta_hi:+.2f}] | {row.quantize_s:.0f} |")
    if args.choose:
        lines.append(f"\nRule: the fastest row with cos_min ≥ {MIN_COSINE}"
                     + (f": `{chosen}`." if chosen else ": none qualifies."))
    # Rows that built the same model (identical fidelity to every digit) show what one row's
    # speedup varies by from job to job.
    for _, same in rows.groupby(["cos_min", "cos_mean", "mAP_delta"]):
        if len(same) > 1:
            low, high = same["speedup"].min(), same["speedup"].max()
            lines.append(f"\n{' and '.join(f'`{v}`' for v in same['variant'])} built the same model (identical "
                         f"fidelity to every digit); their speedups, {low:.2f} and {high:.2f}, differ by "
                         f"{(high / low - 1) * 100:.0f}%: differences of that size between rows are job-to-job "
                         f"noise.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
