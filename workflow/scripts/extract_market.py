import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.fetch import extract_zip
from reidquant.market import RAW_NAME

run_rule(snakemake.log[0], extract_zip, archive=Path(snakemake.input.archive), dest=Path(snakemake.output[0]),
         inner=RAW_NAME)
