import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.summary import search_report

p = snakemake.params
run_rule(snakemake.log[0], search_report, jobs=[tuple(job) for job in p.jobs], search_paths=snakemake.input.search,
         record_paths=snakemake.input.records, outputs=snakemake.output, dataset=p.dataset, weights=p.weights)
