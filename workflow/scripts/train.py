import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.train import recipe, train

p = snakemake.params
run_rule(
    snakemake.log[0], train,
    data_root=Path(snakemake.input.data), out=Path(snakemake.output.weights).parent,
    hp=recipe(json.loads(p.settings), snakemake.wildcards.dataset), height=p.height, width=p.width,
    threads=p.threads or snakemake.threads,
)
