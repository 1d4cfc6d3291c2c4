import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.summary import report

p = snakemake.params
run_rule(
    snakemake.log[0], report,
    jobs=[tuple(job) for job in p.jobs], skipped=[tuple(row) for row in p.skipped],
    quantize=snakemake.input.quantize, timing=snakemake.input.timing, metrics=snakemake.input.metrics,
    dataset=p.dataset, weights=p.weights, outputs=snakemake.output, select=p.select,
    specs={variant: json.loads(spec) for variant, spec in p.specs.items()}, models=snakemake.input.models,
)
