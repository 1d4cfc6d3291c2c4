import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.evaluate import evaluate_and_save

run_rule(snakemake.log[0], evaluate_and_save, path=snakemake.input.features,
         reference_path=snakemake.input.reference or None, json_path=snakemake.output[0])
