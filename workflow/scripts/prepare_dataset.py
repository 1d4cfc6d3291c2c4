import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.market import prepare

run_rule(snakemake.log[0], prepare, raw=Path(snakemake.input.raw), out=Path(snakemake.output[0]),
         require_full=snakemake.params.require_full)
