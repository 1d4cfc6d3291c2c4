import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.synth import SynthSizes, generate

run_rule(snakemake.log[0], generate, out=Path(snakemake.output[0]),
         sizes=SynthSizes.from_settings(json.loads(snakemake.params.sizes)))
