import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.pipeline import layer_sensitivity

p, i = snakemake.params, snakemake.input
run_rule(
    snakemake.log[0], layer_sensitivity,
    name=snakemake.wildcards.variant, spec=json.loads(p.spec), weights=Path(i.weights).parent,
    data_root=Path(i.data), artifact=Path(i.model), record=Path(i.build), out=Path(snakemake.output[0]), height=p.height, width=p.width,
    threads=p.threads or snakemake.threads,
)
