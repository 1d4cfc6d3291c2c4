import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.synth import generate_distractors

run_rule(snakemake.log[0], generate_distractors, out=Path(snakemake.output[0]), count=snakemake.params.images,
         seed=snakemake.params.seed)
