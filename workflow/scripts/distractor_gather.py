import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.pipeline import gather_distractors

run_rule(snakemake.log[0], gather_distractors, shards=[Path(path) for path in snakemake.input.shards],
         out=Path(snakemake.output.embeddings), record_out=Path(snakemake.output.record),
         source=snakemake.params.source, count=snakemake.params.images,
         invalidates=[Path(path) for path in snakemake.params.invalidates])
