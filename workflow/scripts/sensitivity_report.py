import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.summary import sensitivity_report

run_rule(snakemake.log[0], sensitivity_report, variants=snakemake.params.variants, csv_paths=snakemake.input.csv,
         markdown=Path(snakemake.output.markdown), plot=Path(snakemake.output.plot))
