import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.cli import main
from reidquant.rulelog import run_rule

args = [snakemake.input.features, "--json", snakemake.output[0]]
if snakemake.input.reference:
    args += ["--reference", snakemake.input.reference]
run_rule(snakemake.log[0], main, ["evaluate", *args])
