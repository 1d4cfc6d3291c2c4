import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.market import prepare
from reidquant.rulelog import run_rule

run_rule(snakemake.log[0], prepare, Path(snakemake.input.raw), Path(snakemake.output[0]).parent,
         require_full=snakemake.params.require_full)
