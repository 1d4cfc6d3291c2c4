import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule
from reidquant.summary import summarize

p = snakemake.params
i = snakemake.input
run_rule(snakemake.log[0], summarize, [tuple(job) for job in p.jobs], i.quantize, i.timing, i.metrics,
         p.dataset, p.weights, Path(snakemake.output.csv), Path(snakemake.output.markdown))
