"""What each int8 saturation guard does on this CPU, and what older CPUs' int8 arithmetic does.

    snakemake --cores 4 results/summary.csv --configfile benchmarks/cpu_kinds.yaml
    python benchmarks/cpu_kinds.py --out docs/benchmarks/cpu_kinds.md

First, the run's int8 rows as the workflow measured them, each with the guard its build used
(``saturation_guard`` in its quantize.json) and the CPU it ran on.

Then, on a CPU with VNNI, the rows whose int8 convolutions run on oneDNN (PT2E and OpenVINO)
extracted again under oneDNN's instruction-set caps, one process per cap
(``ONEDNN_MAX_CPU_ISA``: AVX512_CORE_VNNI, AVX512_CORE, AVX2). Capped, oneDNN runs the kernels
an older CPU runs: without VNNI, u8 x s8 products summed in pairs into saturating 16-bit
lanes, so the fidelity figures are those of such a CPU's arithmetic. The timings are an
emulation: the capped kernels run on this CPU's cores, caches and clocks, and what oneDNN does
not run (Inductor's own kernels, OpenVINO's element-wise ones) keeps this CPU's instructions.
Each is timed side by side with fp32 under the same cap. ONNX Runtime and fbgemm (the seed's
eager recipe) choose their kernels from the CPU's own flags and cannot be capped this way.

Last, PT2E's program run without compiling: its quantize/dequantize steps in float, the
reference numerics of the same quantizers, with no int8 kernel at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reidquant.devices import cpu_isa, cpu_model
from reidquant.evaluate import evaluate_file
from reidquant.jsonio import read_json, write_text
from reidquant.stats import bootstrap_interval
from reidquant.variants import complete

CAPS = ("AVX512_CORE_VNNI", "AVX512_CORE", "AVX2")
# What each cap leaves: the int8 instruction set of a CPU that has nothing more.
CAPPED_ISA = {"AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE": "avx512", "AVX2": "avx2"}


def guard_of(variant: str, results: Path) -> str:
    guard = read_json(results / variant / "quantize.json").get("saturation_guard")
    if not guard:
        return ""
    return f"{guard['option']} {guard['used']}" + (" (auto)" if guard["setting"] == "auto" else "")


def specs(config: Path, extra: Path) -> dict:
    variants = yaml.safe_load(config.read_text())["variants"]
    variants.update(yaml.safe_load(extra.read_text())["variants"])
    return {name: complete(spec) for name, spec in variants.items()}


def extracted(variant: str, spec: dict, cap: str | None, results: Path, data: Path, scratch: Path) -> dict:
    """Variant's features and timing in a process of its own, oneDNN capped at ``cap``; its
    fidelity and accuracy against the run's fp32 features."""
    tag = f"{variant}_{cap or 'none'}_{'c' if spec.get('compile', True) else 'e'}"
    env = {**os.environ}
    if cap:
        env["ONEDNN_MAX_CPU_ISA"] = cap
    command = [sys.executable, "-m", "reidquant", "extract", "--artifact", str(results / variant / "model"),
               "--spec", json.dumps(spec), "--data", str(data), "--out", str(scratch / f"{tag}.mat"),
               "--timing", str(scratch / f"{tag}.json"), "--reference-artifact", str(results / "fp32" / "model")]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    timing = read_json(scratch / f"{tag}.json")
    metrics = evaluate_file(scratch / f"{tag}.mat", results / "fp32" / "cpu" / "features.mat")
    fp32 = read_json(results / "fp32" / "cpu" / "metrics.json")
    ap, fp32_ap = np.asarray(metrics["per_query"]["ap"]), np.asarray(fp32["per_query"]["ap"])
    low, high = np.array(bootstrap_interval(ap - fp32_ap)) * 100
    return {"features": scratch / f"{tag}.mat", "cos_min": metrics["cos_min"], "cos_mean": metrics["cos_mean"],
            "mAP_delta": (metrics["mAP"] - fp32["mAP"]) * 100, "mAP_delta_lo": low, "mAP_delta_hi": high,
            "speedup": timing["speedup"], "latency_speedup_b1": timing["latency"]["1"]["speedup"]}


def delta(row) -> str:
    return f"{row['mAP_delta']:+.2f} [{row['mAP_delta_lo']:+.2f}, {row['mAP_delta_hi']:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--options", type=Path, default=Path("benchmarks/cpu_kinds.yaml"))
    parser.add_argument("--data", type=Path, default=Path("Market/synthetic/pytorch"))
    parser.add_argument("--caps", nargs="*", default=list(CAPS), choices=CAPS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    table = pd.read_csv(args.results / "summary.csv")
    table = table[(table["device"] == "cpu") & table["precision"].str.startswith("int8")].copy()
    table["guard"] = [guard_of(v, args.results) for v in table["variant"]]
    table["guard_choice"] = table["guard"].str.replace(" (auto)", "", regex=False)
    first = table.iloc[0]
    lines = [f"`benchmarks/cpu_kinds.py` on {cpu_model()} (int8 instructions: {cpu_isa()}; flags read from "
             f"/proc/cpuinfo), {first['threads']} threads, torch {first['torch']}.", "",
             "## The run's int8 rows, each guard setting a row", "",
             "Each row timed side by side with fp32 in its own job (speedup: batch 32; b1: batch 1, per call).", "",
             "| variant | precision | runtime | guard used | cos_min | cos_mean | mAP_delta [95% paired] | speedup | "
             "b1 speedup |", "|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.sort_values(["type", "variant"]).iterrows():
        lines.append(f"| {row['variant']} | {row['precision']} | {row['runtime']} | {row['guard']} | "
                     f"{row['cos_min']:.4f} | {row['cos_mean']:.5f} | {delta(row)} | {row['speedup']:.2f} | "
                     f"{row['latency_speedup_b1']:.2f} |")
    variants = specs(args.config, args.options)
    # One artifact per (type, guard used): on this CPU an `auto` row and the row that sets its
    # choice are the same build, and extracting both again under each cap measures nothing new.
    onednn_rows = table[table["type"].isin(["pt2e_int8", "openvino"])].sort_values("variant")
    capped = onednn_rows.drop_duplicates(["type", "guard_choice"])["variant"].tolist()
    found = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in capped:
            for cap in [None, *args.caps]:
                print(f"{variant} under {cap or 'no cap'}", file=sys.stderr, flush=True)
                found.append({"variant": variant, "cap": cap or "none", **extracted(
                    variant, variants[variant], cap, args.results, args.data, Path(scratch))})
        for variant in [v for v in capped if variants[v]["type"] == "pt2e_int8"]:
            eager = {**variants[variant], "compile": False}
            print(f"{variant} without compiling", file=sys.stderr, flush=True)
            reference = {"variant": variant, "cap": "not compiled (float reference numerics)", **extracted(
                variant, eager, None, args.results, args.data, Path(scratch))}
            # Image by image, how far each cap's int8 kernels take the program from its own
            # reference numerics: the loss the kernels add, apart from the quantizers'.
            for row in found:
                if row["variant"] == variant:
                    row["to_reference"] = evaluate_file(row["features"], reference["features"])["cos_min"]
            found.append(reference)
    lines += ["", "## oneDNN capped: older CPUs' int8 arithmetic, emulated", "",
              "The same artifacts extracted again, each in a process of its own with `ONEDNN_MAX_CPU_ISA` set: "
              "the capped kernels are those a CPU with only that instruction set runs (avx512: AVX-512 without "
              "VNNI; avx2: no AVX-512, no VNNI), so fidelity is that CPU's; **speedups are an emulation** (this "
              "CPU's cores, caches and clocks; what oneDNN does not run keeps this CPU's instructions), each "
              "timed side by side with fp32 under the same cap.", "",
              "PT2E's rows are also compared image by image with the same program run without compiling "
              "(its quantize/dequantize steps in float: the quantizers' reference numerics): the worst cosine "
              "between the two is what the int8 kernels under that cap add to the quantizers' own loss.", "",
              "| variant | guard used | oneDNN cap (int8 ISA it leaves) | cos_min | cos_mean | mAP_delta [95% paired] "
              "| worst cosine to its reference numerics | speedup (emulated) | b1 speedup (emulated) |",
              "|---|---|---|---|---|---|---|---|---|"]
    guards = dict(zip(table["variant"], table["guard"]))
    for row in found:
        cap = row["cap"] + (f" ({CAPPED_ISA[row['cap']]})" if row["cap"] in CAPPED_ISA else "")
        lines.append(f"| {row['variant']} | {guards[row['variant']]} | {cap} | {row['cos_min']:.4f} | "
                     f"{row['cos_mean']:.5f} | {delta(row)} | "
                     f"{'' if 'to_reference' not in row else format(row['to_reference'], '.4f')} | "
                     f"{row['speedup']:.2f} | {row['latency_speedup_b1']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
