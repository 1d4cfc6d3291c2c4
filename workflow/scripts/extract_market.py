import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.fetch import extract_zip
from reidquant.market import RAW_NAME
from reidquant.rulelog import run_rule

run_rule(snakemake.log[0], extract_zip, Path(snakemake.input.archive), Path(snakemake.output[0]), inner=RAW_NAME)
