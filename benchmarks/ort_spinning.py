"""Whether ONNX Runtime's spinning threads slow what is timed next to it on the same cores.

    snakemake --cores 4 results/summary.csv && python benchmarks/ort_spinning.py

Eager fp32 and the run's ``ort_fp32`` timed in 20 alternating rounds at batch 1, with ONNX
Runtime's ``session.intra_op.allow_spinning`` on and off (twice each, in this order), and eager
fp32 alone after each: the per-round ratio eager/ONNX Runtime is what a side-by-side speedup
reads. Prints one line per setting.
"""

from __future__ import annotations

import statistics

import numpy as np
import onnxruntime as ort
import torch

from reidquant.devices import cpu_model, set_threads
from reidquant.features import Runner, timed
from reidquant.variants import complete, load_runner


def session(path: str, spin: str, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    run = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run
    return Runner(lambda batch: torch.from_numpy(run(None, {"images": batch.numpy()})[0]))


def main() -> None:
    threads = set_threads(None)
    eager = load_runner("results/fp32/model", complete({"type": "fp32"}), "cpu")
    x = torch.randn(1, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    print(f"{cpu_model()}, {threads} threads, onnxruntime {ort.__version__}")
    with torch.inference_mode():
        for spin in ("1", "0", "1", "0"):
            runner = session("results/ort_fp32/model/model.onnx", spin, threads)
            for _ in range(3):
                runner(x), eager(x)
            beside, own = [], []
            for round_ in range(20):
                if round_ % 2:
                    beside.append(timed(eager, x))
                own.append(timed(runner, x))
                if not round_ % 2:
                    beside.append(timed(eager, x))
            alone = [timed(eager, x) for _ in range(10)]
            print(f"allow_spinning {spin}: onnxruntime {statistics.median(own) * 1e3:.1f} ms, eager fp32 beside it "
                  f"{statistics.median(beside) * 1e3:.1f} ms, alone {statistics.median(alone) * 1e3:.1f} ms, "
                  f"per-round ratio {statistics.median(np.array(beside) / np.array(own)):.2f}")


if __name__ == "__main__":
    main()
