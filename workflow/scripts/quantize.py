import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.pipeline import quantize

p, i, o = snakemake.params, snakemake.input, snakemake.output
run_rule(
    snakemake.log[0], quantize,
    name=snakemake.wildcards.variant, spec=json.loads(p.spec), weights=Path(i.weights).parent,
    data_root=Path(i.data), out=Path(o.model), info_out=Path(o.info), height=p.height, width=p.width,
    threads=snakemake.threads, weights_label=p.weights, dataset_label=p.dataset,
    ranking=Path(i.ranking) if i.ranking else None, ms=p.ms or (1,), invalidates=[Path(f) for f in p.invalidates],
)
