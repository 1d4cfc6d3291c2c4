import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.fetch import fetch_checkpoint

run_rule(snakemake.log[0], fetch_checkpoint, source=snakemake.params.source,
         folder=Path(snakemake.output.weights).parent, sha256=snakemake.params.sha256)
