import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.fetch import download

run_rule(snakemake.log[0], download, url=snakemake.params.url, dest=Path(snakemake.output[0]),
         sha256=snakemake.params.sha256)
