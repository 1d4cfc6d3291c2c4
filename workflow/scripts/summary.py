import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.plots import plot_summary
from reidquant.summary import summarize


def main(p, i, o):
    table = summarize([tuple(job) for job in p.jobs], i.quantize, i.timing, i.metrics, p.dataset, p.weights,
                      Path(o.csv), Path(o.markdown), skipped=[tuple(row) for row in p.skipped])
    plot_summary(table, o)


run_rule(snakemake.log[0], main, snakemake.params, snakemake.input, snakemake.output)
