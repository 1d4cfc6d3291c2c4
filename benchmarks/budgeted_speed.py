"""What a fidelity budget costs in speed: each budgeted row against the row it was made from,
side by side in one process.

    snakemake --cores 4 results/summary.csv --configfile config/budgeted.yaml
    python benchmarks/budgeted_speed.py --results results --out docs/benchmarks/budgeted_speed.md

Loads ``ov_int8_ac`` and ``ov_int8``, ``int8_auto`` and ``int8`` from a finished run and times
the four on the same gallery images at each ``--batch``, in rotating rounds, each set up for
latency (OpenVINO's LATENCY hint; PT2E compiled for the shape), warm-up and compilation
excluded: the median of the per-round ratios of the plain row's time to the budgeted row's.
The workflow times each row beside fp32 in a job of its own; here the pair meets directly.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
import yaml

from reidquant.configcheck import checked, schema_part
from reidquant.data import load_batch
from reidquant.devices import cpu_model, set_threads
from reidquant.features import rotating_rounds
from reidquant.jsonio import read_json, write_text
from reidquant.market import list_prepared
from reidquant.variants import complete, load_runner

PAIRS = {"ov_int8_ac": "ov_int8", "int8_auto": "int8"}  # budgeted row -> the row it was made from
ROUNDS = 20


def load_config(paths: list[Path]) -> dict:
    """The run's config: the files merged as Snakemake merges ``--configfile``s, key by key."""
    def merge(into: dict, other: dict) -> dict:
        for key, value in other.items():
            into[key] = merge(into.get(key, {}), value) if isinstance(value, dict) else value
        return into

    config: dict = {}
    for path in paths:
        merge(config, yaml.safe_load(path.read_text()))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--data", type=Path, default=Path("Market/synthetic/pytorch"))
    parser.add_argument("--config", type=Path, nargs="+",
                        default=[Path("config/config.yaml"), Path("config/budgeted.yaml")])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="images per call")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = load_config(args.config)
    threads = set_threads(config.get("threads"))
    size = checked(config.get("input", {}), schema_part("input"), "input")
    names = [name for pair in PAIRS.items() for name in pair]
    runners = {name: load_runner(args.results / name / "model", complete(config["variants"][name]), "cpu",
                                 name).for_latency() for name in names}
    gallery = list_prepared(args.data, "gallery")
    lines = [f"`benchmarks/budgeted_speed.py` on {cpu_model()} ({threads} threads), torch {torch.__version__}, "
             f"gallery images at {size['height']}×{size['width']}, {args.rounds} rotating rounds per batch size, "
             "each runtime set up for latency; ratio = the median of the per-round ratios of the plain row's time "
             "to the budgeted row's (below 1: the budget costs speed), with the rounds' 10th–90th percentiles.\n",
             "| budgeted row | made from | layers in float | batch | ms per call (budgeted / plain) | "
             "speed ratio [p10, p90] |",
             "|---|---|---|---|---|---|"]
    for batch_size in args.batch:
        batch = load_batch(gallery[:batch_size], size["height"], size["width"])
        with torch.inference_mode():
            for runner in runners.values():  # compile for the shape, then warm up
                runner(batch)
                runner(batch)
        times = rotating_rounds(runners, batch, args.rounds)
        for budgeted, plain in PAIRS.items():
            ratios = np.array(times[plain]) / np.array(times[budgeted])
            info = read_json(args.results / budgeted / "quantize.json")
            lines.append(f"| {budgeted} | {plain} | {len(info.get('float_layers', []))} | {batch_size} | "
                         f"{statistics.median(times[budgeted]) * 1000:.1f} / {statistics.median(times[plain]) * 1000:.1f}"
                         f" | {np.median(ratios):.2f} [{np.percentile(ratios, 10):.2f}, "
                         f"{np.percentile(ratios, 90):.2f}] |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
