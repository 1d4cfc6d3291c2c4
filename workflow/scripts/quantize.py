import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.jsonio import write_json
from reidquant.pipeline import quantize

p = snakemake.params
info = run_rule(snakemake.log[0], quantize, snakemake.wildcards.variant, json.loads(p.spec),
                Path(snakemake.input.weights).parent, Path(snakemake.input.data), Path(snakemake.output.model),
                height=p.height, width=p.width, threads=p.threads or snakemake.threads)
write_json(snakemake.output.info, info)
