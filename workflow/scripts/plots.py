import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.plots import plot_summary
from reidquant.rulelog import run_rule

run_rule(snakemake.log[0], plot_summary, Path(snakemake.input.csv), snakemake.output)
