import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.fetch import fetch_checkpoint
from reidquant.rulelog import run_rule

run_rule(snakemake.log[0], fetch_checkpoint, snakemake.params.source, Path(snakemake.output.weights).parent,
         sha256=snakemake.params.sha256)
