import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.search import search_and_save

p, i = snakemake.params, snakemake.input
run_rule(snakemake.log[0], search_and_save, features_path=Path(i.features), distractors_path=Path(i.distractors),
         record_path=Path(i.record), out=Path(snakemake.output[0]), threads=p.threads or snakemake.threads,
         **json.loads(p.settings))
