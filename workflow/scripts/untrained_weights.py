import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.model import save_untrained

run_rule(snakemake.log[0], save_untrained, folder=Path(snakemake.output.weights).parent,
         seed=snakemake.params.seed, arch=snakemake.params.arch)
