#!/usr/bin/env bash
# The cuda code paths on a machine with an NVIDIA GPU, in one short run:
#   1. the tests' tiny config on cpu and cuda (every variant type the GPU runs),
#   2. the default config's cuda rows (fp32, fp16, bf16) at full size, on untrained weights
#      (training is a CPU job and not what is checked here).
# Each run has a hard time limit (LIMIT seconds, default 240) and works in a temporary copy of
# the workflow. Summaries are printed and kept in OUT (default results-gpu/).
# Usage, from anywhere: bash benchmarks/gpu_check.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
limit=${LIMIT:-240}

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi -L failed); nothing to check" >&2
    exit 1
fi
out=$(mkdir -p "${OUT:-$repo/results-gpu}" && cd "${OUT:-$repo/results-gpu}" && pwd)
nvidia-smi -L
python -c "import reidquant, snakemake" 2>/dev/null || pip install -q -e "$repo"
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

check() {  # name, config file: run the workflow on it in a fresh copy, keep the summary
    local name=$1 config=$2 work
    work=$(mktemp -d)
    cp -r "$repo"/{Snakefile,workflow,reidquant,envs,profiles} "$work"/
    mkdir "$work/config" && cp "$config" "$work/config/config.yaml"
    echo "== $name"
    local status=0
    (cd "$work" && timeout "$limit" python -m snakemake --cores all results/summary.csv >"$out/$name.log" 2>&1) ||
        status=$?
    mkdir -p "$out/$name"
    cp -r "$work"/results/summary.* "$work"/results/plots "$work"/results/logs "$out/$name/" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "gpu_check: $name failed (exit $status; 124 is the time limit); log: $out/$name.log" >&2
        tail -n 30 "$out/$name.log" >&2
        return "$status"
    fi
    cat "$out/$name/summary.md"
}

full=$(mktemp --suffix=.yaml)
python - "$repo/config/config.yaml" "$full" <<'PY'
import sys
import yaml

config = yaml.safe_load(open(sys.argv[1]))
config["devices"] = ["cuda"]
config["model"]["weights"] = "untrained"
config["variants"] = {name: config["variants"][name] for name in ("fp32", "fp16", "bf16")}
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY

check tiny "$repo/tests/tiny_config.yaml"
check default-cuda "$full"
